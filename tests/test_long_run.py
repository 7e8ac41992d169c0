"""benchmarks/long_run.py, the tool that carries the recipes' long runs across sessions: `save` keeps exactly
what `mcuzoo run --resume` needs, with one checkpoint, and `status` reads both copies."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def long_run(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("long_run", REPO / "benchmarks" / "long_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "COMMITTED", tmp_path / "committed")
    monkeypatch.setattr(mod, "REPO", tmp_path)
    return mod


def live_run(work: Path, name: str, epoch: int) -> Path:
    run = work / name
    (run / "checkpoints").mkdir(parents=True)
    for f in ("config.yaml", "model_info.json", "float_model.keras"):
        (run / f).write_text(f"{f} at {epoch}\n")
    (run / "training_log.csv").write_text("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds\n" + "".join(
        f"{e},1.0,0.5,1.0,0.5,0.01,10\n" for e in range(1, epoch + 1)))
    (run / "checkpoints" / f"epoch_{epoch:04d}.keras").write_text("weights\n")
    (run / "checkpoints" / "state.json").write_text(json.dumps({
        "epoch": epoch, "learning_rate": 0.01, "best_val_accuracy": 0.5, "best_epoch": 1, "seconds": 36.0,
        "checkpoint": f"epoch_{epoch:04d}.keras"}))
    return run


def test_save_keeps_what_resume_needs_and_one_checkpoint(long_run, tmp_path, capsys):
    work = tmp_path / "work"
    live_run(work, "r", 3)
    old = long_run.COMMITTED / "r" / "checkpoints"
    old.mkdir(parents=True)
    (old / "epoch_0001.keras").write_text("older\n")
    assert long_run.save(work, "r") == 0
    kept = long_run.COMMITTED / "r"
    assert sorted(p.name for p in (kept / "checkpoints").iterdir()) == ["epoch_0003.keras", "state.json"]
    for f in ("config.yaml", "model_info.json", "float_model.keras", "training_log.csv"):
        assert (kept / f).read_bytes() == (work / "r" / f).read_bytes()
    assert (kept / "training_curves.png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert long_run.status(work) == 0
    out = capsys.readouterr().out
    assert "committed r: epoch 3, best validation 50.00 % at epoch 1" in out and "live      r: epoch 3" in out


def test_save_refuses_a_run_without_state(long_run, tmp_path, capsys):
    (tmp_path / "work" / "r").mkdir(parents=True)
    assert long_run.save(tmp_path / "work", "r") == 1
    assert "no checkpoints/state.json" in capsys.readouterr().err
    assert not (long_run.COMMITTED / "r").exists()


def test_status_gives_the_pace_and_the_time_left(long_run, tmp_path, capsys):
    work = tmp_path / "work"
    run = live_run(work, "r", 5)
    long_run.COMMITTED.mkdir()
    (run / "config.yaml").write_text("training:\n  epochs: 1005\n")
    st = json.loads((run / "checkpoints" / "state.json").read_text())
    st["history"] = [{"epoch": e, "seconds": s} for e, s in enumerate([90.0, 30.0, 36.0, 40.0, 33.0], 1)]
    (run / "checkpoints" / "state.json").write_text(json.dumps(st))
    assert long_run.status(work) == 0
    assert "36.0 s per epoch (median of the last 5): 1000 epochs left, about 10.0 h" in capsys.readouterr().out
    st["stopped_early"] = True  # a run that has ended has no time left
    (run / "checkpoints" / "state.json").write_text(json.dumps(st))
    long_run.status(work)
    out = capsys.readouterr().out
    assert "stopped early" in out and "left" not in out


def test_status_into_a_closed_pipe_stops_quietly(tmp_path):
    """`python benchmarks/long_run.py status | head -1`: the reader has gone; no traceback, exit 141 as a shell
    reports a tool killed by the closed pipe."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # every write to the pipe fails, whenever it comes
    try:
        p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "long_run.py"), "--work", str(tmp_path), "status"],
                           stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 141
