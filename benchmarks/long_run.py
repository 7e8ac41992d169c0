"""Keep the cards' long training runs (issue #17) going across sessions.

A session ends after at most three hours and kills what is still running, so a recipe of 1000
epochs runs in pieces: each session resumes it from the state committed in
``benchmarks/long_runs/NAME/`` and, before it ends, saves the newest state back there for the
next one. This script does those steps the same way every time:

    python benchmarks/long_run.py status              # every committed run and its live copy, pace, time left
    python benchmarks/long_run.py start CONFIG [key=value ...]   # a new run, in the background
    python benchmarks/long_run.py resume NAME         # continue from the committed state
    python benchmarks/long_run.py stop [NAME]         # Ctrl-C the runs: the epoch under way is dropped
    python benchmarks/long_run.py save NAME           # the live state -> benchmarks/long_runs/NAME

Live runs lie in ``--work`` (default ``/work/longrun_runs``, outside the checkout), each logging
to ``WORK/NAME.log``. ``save`` copies what ``mcuzoo run --resume`` needs (config.yaml,
model_info.json, training_log.csv, the best float_model.keras, checkpoints/state.json and the one
checkpoint it names), deletes older checkpoints from the committed copy and draws the curves so far
(``training_curves.png``); ``git add -A
benchmarks/long_runs`` then commits it. Nothing here trains: every run is ``mcuzoo run``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "benchmarks" / "long_runs"
STATE_FILES = ("config.yaml", "model_info.json", "training_log.csv", "float_model.keras")
sys.path.insert(0, str(REPO / "src"))  # mcuzoo's config reader and plots, from this checkout


def _state(run: Path) -> dict | None:
    p = run / "checkpoints" / "state.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _pids(run: Path) -> list[int]:
    """Processes running ``mcuzoo run`` on ``run``: the one in ``WORK/NAME.pid`` while it lives, and any
    whose command line names the run directory (a run resumed by hand)."""
    out = []
    try:
        pid = int((run.parent / f"{run.name}.pid").read_text())
        if b"mcuzoo" in Path(f"/proc/{pid}/cmdline").read_bytes():
            out.append(pid)
    except (OSError, ValueError):
        pass
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv if a]
        if "run" in text and any(a.rstrip("/") == str(run) for a in text) and int(proc.name) not in out:
            out.append(int(proc.name))
    return out


def _pace(run: Path, st: dict) -> str:
    """The recent pace and what is left at that pace: the median seconds of the last 20 epochs (a resumed
    epoch's start-up and a busy machine's slow epochs move a median less than a mean) times the epochs
    still to run (``training.epochs`` of the run's config)."""
    import statistics

    from mcuzoo.config import load_config
    from mcuzoo.errors import McuzooError

    recent = [float(h["seconds"]) for h in st.get("history", [])[-20:] if h.get("seconds")]
    try:
        epochs: int | None = load_config(run / "config.yaml").training.epochs
    except McuzooError:
        epochs = None
    if not recent or epochs is None or st.get("stopped_early") or st["epoch"] >= epochs:
        return ""
    per = statistics.median(recent)
    left = epochs - st["epoch"]
    return f", {per:.1f} s per epoch (median of the last {len(recent)}): {left} epochs left, about {left * per / 3600:.1f} h"


def _describe(name: str, run: Path) -> str:
    st = _state(run)
    if st is None:
        return f"{name}: no checkpoints/state.json in {run}"
    pids = _pids(run)
    running = " (running, pid " + ",".join(map(str, pids)) + ")" if pids else ""
    return (f"{name}: epoch {st['epoch']}, best validation {100 * st['best_val_accuracy']:.2f} % at epoch "
            f"{st['best_epoch']}, lr {st['learning_rate']:g}, {st['seconds'] / 3600:.2f} h trained"
            f"{', stopped early' if st.get('stopped_early') else ''}{_pace(run, st)} - {run}{running}")


def status(work: Path) -> int:
    names = sorted({p.name for p in COMMITTED.iterdir() if p.is_dir()}
                   | ({p.name for p in work.iterdir() if p.is_dir()} if work.is_dir() else set()))
    for name in names:
        for where, base in (("committed", COMMITTED), ("live", work)):
            if (base / name).is_dir():
                print(f"{where:9} {_describe(name, base / name)}")
    return 0


def _launch(work: Path, name: str, argv: list[str]) -> int:
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, cwd=work, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    (work / f"{name}.pid").write_text(f"{proc.pid}\n")
    print(f"started pid {proc.pid}: {' '.join(argv)}\nlog: {log}")
    return 0


def start(work: Path, config: str, overrides: list[str]) -> int:
    from mcuzoo.config import load_config

    name = load_config(config, overrides).name  # the run directory's name, for its log and pid files
    return _launch(work, name, ["mcuzoo", "run", str(Path(config).resolve()), f"output_dir={work}", *overrides])


def resume(work: Path, name: str) -> int:
    live, kept = work / name, COMMITTED / name
    st_live, st_kept = _state(live), _state(kept)
    if st_kept is None and st_live is None:
        print(f"long_run: error: no state for {name} in {kept} or {live}", file=sys.stderr)
        return 1
    if _pids(live):
        print(f"long_run: error: {name} is already running (pid {_pids(live)})", file=sys.stderr)
        return 1
    if st_kept is not None and (st_live is None or st_live["epoch"] < st_kept["epoch"]):
        if live.exists():
            shutil.rmtree(live)
        shutil.copytree(kept, live)
        print(f"copied the committed state (epoch {st_kept['epoch']}) to {live}")
    return _launch(work, name, ["mcuzoo", "run", "--resume", str(live)])


def stop(work: Path, name: str | None) -> int:
    runs = [work / name] if name else [p for p in work.iterdir() if p.is_dir()] if work.is_dir() else []
    pids = {pid: run for run in runs for pid in _pids(run)}
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    deadline = time.time() + 600  # the run exits at once; its last checkpoint is the last whole epoch
    while pids and time.time() < deadline:
        pids = {p: r for p, r in pids.items() if Path(f"/proc/{p}").exists()}
        time.sleep(2)
    for run in runs:
        print(_describe(run.name, run))
    return 0 if not pids else 1


def save(work: Path, name: str) -> int:
    live, kept = work / name, COMMITTED / name
    st = _state(live)
    if st is None:
        print(f"long_run: error: no checkpoints/state.json in {live}", file=sys.stderr)
        return 1
    if _pids(live):
        print(f"long_run: error: {name} is still running: stop it first", file=sys.stderr)
        return 1
    (kept / "checkpoints").mkdir(parents=True, exist_ok=True)
    for f in STATE_FILES:
        if (live / f).is_file():
            shutil.copy2(live / f, kept / f)
    ckpt = st["checkpoint"]
    shutil.copy2(live / "checkpoints" / ckpt, kept / "checkpoints" / ckpt)
    shutil.copy2(live / "checkpoints" / "state.json", kept / "checkpoints" / "state.json")
    for old in (kept / "checkpoints").glob("epoch_*.keras"):
        if old.name != ckpt:
            old.unlink()
    from mcuzoo.plots import training_curves_png

    png = training_curves_png(kept / "training_log.csv", kept / "training_curves.png",
                              f"{name}: epoch {st['epoch']} (best validation at {st['best_epoch']})")
    print(f"saved {_describe(name, kept)}\ncurves: {png}\nnext: git add -A {kept.relative_to(REPO)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/work/longrun_runs"), help="where the live runs lie")
    sub = ap.add_subparsers(dest="verb", required=True)
    sub.add_parser("status")
    p = sub.add_parser("start")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    for verb in ("resume", "save"):
        sub.add_parser(verb).add_argument("name")
    sub.add_parser("stop").add_argument("name", nargs="?")
    a = ap.parse_args()
    try:
        rc = _run(a)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return rc
    except BrokenPipeError:  # `status | head`, any verb: the reader has gone; stop quietly, as mcuzoo's CLI does
        from mcuzoo.console import stdout_gone

        return stdout_gone()


def _run(a: argparse.Namespace) -> int:
    work, verb = a.work.resolve(), a.verb
    if verb == "status":
        return status(work)
    if verb == "start":
        return start(work, a.config, a.overrides)
    if verb == "resume":
        return resume(work, a.name)
    if verb == "stop":
        return stop(work, a.name)
    return save(work, a.name)


if __name__ == "__main__":
    raise SystemExit(main())
