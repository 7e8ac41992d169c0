"""The model zoo: pretrained runs published as folders, and their index.

``mcuzoo zoo add RUN_DIR`` copies a finished run's artifacts (models, config,
metrics, analysis, card, plots) into ``zoo/<model>/<dataset>_<resolution>/``;
``mcuzoo zoo index`` rewrites ``zoo/README.md``, a table of every model with its
accuracy, footprint and latency estimate, read from each folder's JSON files;
``mcuzoo zoo compare RUN_DIR ZOO_FOLDER`` says whether a new run may replace a zoo
model: a zoo model is replaced only when the new one scores higher on validation.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import rundir
from .errors import McuzooError
from .quantization.mixed import MIXED_GLOB
from .quantization.qat import QAT_MODEL

if TYPE_CHECKING:
    from .models.scoring import PairedDifference

#: copied from the run; MODEL_CARD.md is not among them: `add` renders it in the zoo folder
PUBLISHED = (
    rundir.CONFIG, rundir.MODEL_INFO, rundir.FLOAT_MODEL, rundir.INT8_TFLITE, rundir.METRICS, rundir.ANALYSIS,
    rundir.HISTORY, rundir.TRAINING_LOG, "confusion_float.png", "confusion_int8.png",
    "training_curves.png", "memory_timeline.png", "quant_report.json", "quant_report.png", QAT_MODEL,
)
REQUIRED = (rundir.CONFIG, rundir.MODEL_INFO, rundir.FLOAT_MODEL, rundir.INT8_TFLITE, rundir.METRICS, "MODEL_CARD.md")


def _dataset_label(run_dir: Path, metrics: dict) -> str:
    from .config import read_yaml

    cfg = read_yaml(run_dir / rundir.CONFIG)
    ds = cfg.get("dataset", {})
    ds = ds if isinstance(ds, dict) else {}
    if ds.get("path"):
        return Path(str(ds["path"])).name
    return str(metrics.get("dataset", ds.get("name", "data")))


def _folder_name(value, what: str, root: Path) -> str:
    """One folder name taken from a run's files: a plain name, never a path out of the zoo."""
    if not isinstance(value, str) or "/" in value:
        raise McuzooError(f"{what} {value!r} is not a plain folder name for {root}")
    rundir.safe_join(root, value, what)
    return value


def add(run_dir: str | Path, zoo_dir: str | Path = "zoo") -> Path:
    """Publish a finished run into the zoo; return the folder."""
    run_dir = Path(run_dir)
    missing = [n for n in REQUIRED if not (run_dir / n).is_file()]
    if missing:
        raise McuzooError(f"{run_dir} is not a finished run with a card: missing {', '.join(missing)}")
    metrics = rundir.read_json(run_dir / rundir.METRICS)
    shape = metrics.get("input_shape") if isinstance(metrics, dict) else None
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and 0 < v < 1 << 16 for v in shape)):
        raise McuzooError(f"{run_dir / rundir.METRICS} is not a mcuzoo metrics file (no input_shape [H, W, C])")
    h, w, _ = shape
    res = f"{h}" if h == w else f"{h}x{w}"
    root = Path(zoo_dir)
    model = _folder_name(metrics.get("model"), f"model name in {run_dir / rundir.METRICS}", root)
    label = _folder_name(f"{_dataset_label(run_dir, metrics)}_{res}", "dataset label", root / model)
    dest = root / model / label
    _check_int8_model(run_dir / rundir.INT8_TFLITE)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise rundir.disk_error(dest, e) from None
    # not the leftover temp files of an interrupted write (".model.abcd.tmp.onnx")
    names = list(PUBLISHED) + sorted(p.name for p in run_dir.glob("*.onnx") if not p.name.startswith("."))
    for name in names:
        src = run_dir / name
        if not src.is_file():
            continue
        if name == rundir.FLOAT_MODEL:
            model = _without_optimizer(src)
            if model is not None:
                if not _same_weights(model, dest / name):  # a re-save differs in bytes: keep the zoo's copy
                    with rundir.atomic_path(dest / name) as tmp:
                        model.save(tmp)
                continue
        # a re-export differs in bytes only; not a mixed model, whose weight names metrics.json lists
        if name.endswith(".onnx") and not fnmatch.fnmatch(name, f"*{MIXED_GLOB}") and _same_onnx(src, dest / name):
            continue
        if name == rundir.CONFIG:  # its paths relative to the zoo folder, so that it runs from any checkout
            rundir.write_text(dest / name, _relocated_config(src, dest))
            continue
        if name == rundir.ANALYSIS:  # the files it names, as the zoo folder holds them (not the run's paths)
            rundir.write_json(dest / name, _relocated_analysis(rundir.read_json(src)))
            continue
        if name == rundir.METRICS:  # its dataset notes without where the data lay on the training machine
            rundir.write_json(dest / name, _relocated_metrics(metrics))
            continue
        with rundir.atomic_path(dest / name) as tmp:
            shutil.copyfile(src, tmp)
    # a mixed model of an earlier search (other shares in its name) would be mistaken for this one
    for old in [*dest.glob(f"*{MIXED_GLOB}"), dest / QAT_MODEL]:
        if not (run_dir / old.name).is_file():
            old.unlink(missing_ok=True)
    from .export import publish

    publish(run_dir, dest)  # the run's TFLM export (export stage), never one of an older model
    from .card import write_card

    write_card(dest, plots=False)  # "how to reproduce" from the zoo's config, not the run's folders
    index(zoo_dir)
    return dest


def _relocated_analysis(a: Any) -> Any:
    """A run's analysis.json as a zoo folder holds it: the model and plot it names by file name only."""
    for key in ("model", "plot_path"):
        if isinstance(a, dict) and isinstance(a.get(key), str):
            a[key] = Path(a[key]).name
    return a


def _relocated_metrics(m: dict) -> dict:
    """A run's metrics.json as a zoo folder holds it: its notes without the training machine's paths."""
    if isinstance(m.get("notes"), list):
        m = {**m, "notes": [rundir.without_machine_paths(n) if isinstance(n, str) else n for n in m["notes"]]}
    return m


def _check_int8_model(path: Path) -> None:
    """Refuse to publish an int8 model that is not a whole, consistent .tflite (truncated, replaced, lying)."""
    from .runtime import check_tflite_graph, check_tflite_identifier

    try:
        data = path.read_bytes()
    except OSError as e:
        raise McuzooError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    check_tflite_identifier(data, path)
    check_tflite_graph(data, path)


def _relocated_config(src: Path, dest: Path) -> str:
    """A run's config.yaml as the zoo folder ``dest`` holds it: dataset and initial-weights paths relative to
    ``dest`` (a config's relative paths resolve against its own folder)."""
    from .config import config_to_yaml, load_config

    return config_to_yaml(load_config(src), relative_to=dest)


def _without_optimizer(src: Path):
    """The model of a .keras file that holds optimizer state (older runs kept Adam's moments: 2/3 of the
    file), loaded uncompiled so that saving it writes the model alone; None when there is none to strip."""
    import io
    import zipfile

    from .models import load_keras_model

    try:
        with zipfile.ZipFile(src) as z:
            weights = z.read("model.weights.h5")
        import h5py

        with h5py.File(io.BytesIO(weights), "r") as f:
            if "optimizer" not in f:
                return None
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        pass  # not a readable .keras: loading says what is wrong
    return load_keras_model(src)


def _onnx_inputs(session) -> list[tuple]:
    """(name, type, shape) of each input; symbolic dimensions ("unk__96", counter-named too) become None."""
    return [(i.name, i.type, [d if isinstance(d, int) else None for d in i.shape]) for i in session.get_inputs()]


def _same_onnx(src: Path, dest: Path, probes: int = 4) -> bool:
    """True when the zoo's ``dest`` computes what ``src`` computes: the same inputs and outputs, and equal
    results (to float32 rounding) on seeded random inputs. tf2onnx numbers the names of what it generates from
    counters shared by the whole process, and even its node count can differ from one export of the same model
    to the next, so a re-exported model rarely matches the zoo's byte for byte."""
    import numpy as np

    if not dest.is_file():
        return False
    if src.read_bytes() == dest.read_bytes():
        return True
    try:
        import onnxruntime as ort

        a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, dest))
        sig = _onnx_inputs(a)
        if sig != _onnx_inputs(b) or [o.name for o in a.get_outputs()] != [o.name for o in b.get_outputs()]:
            return False
        rng = np.random.default_rng(0)
        feed: dict[str, np.ndarray] = {}
        for name, kind, shape in sig:
            shape = [d if d is not None and d > 0 else 2 for d in shape]
            if kind == "tensor(uint8)":
                feed[name] = rng.integers(0, 256, (probes, *shape[1:]), dtype=np.uint8)
            elif kind == "tensor(float)":
                feed[name] = rng.random((probes, *shape[1:]), dtype=np.float32)
            else:
                return False
        if any(sh[0] == 1 for _, _, sh in sig):  # a fixed batch of 1: one probe
            feed = {k: v[:1] for k, v in feed.items()}
        return all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a.run(None, feed), b.run(None, feed)))
    except Exception:  # an unreadable zoo file is replaced
        return False


def _same_weights(model, path: Path) -> bool:
    import numpy as np

    from .models import load_keras_model

    if not path.is_file():
        return False
    try:
        other = load_keras_model(path).get_weights()
    except McuzooError:
        return False
    mine = model.get_weights()
    return len(mine) == len(other) and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(mine, other))


def _int8_mark(entry: dict) -> str:
    """"" for an MCU-exact int8 top-1; else what measured it (XNNPACK: runs before 2026-12 did not record it)."""
    if entry.get("top1") is None or entry.get("kernels") == "exact":
        return ""
    return " (XNNPACK, not MCU-exact)" if entry.get("kernels") in (None, "xnnpack") else f" ({entry['kernels']})"


def _row(folder: Path, zoo_dir: Path) -> dict | None:
    mpath = folder / rundir.METRICS
    if not mpath.is_file():
        return None
    m = rundir.read_json(mpath)
    a = rundir.read_json(folder / rundir.ANALYSIS) if (folder / rundir.ANALYSIS).is_file() else {}
    try:
        return _row_of(m, a, folder, zoo_dir)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise McuzooError(f"{mpath} (or the analysis.json beside it) is not a mcuzoo metrics file") from None


def _row_of(m: dict, a: dict, folder: Path, zoo_dir: Path) -> dict:
    h747 = a.get("boards", {}).get("STM32H747", {})

    def pct(key):
        v = (m.get(key) or {}).get("top1")
        return f"{100 * v:.2f} %" if v is not None else "-"

    kib = lambda v: f"{v / 1024:.2f} KiB" if v else "-"  # noqa: E731
    lat = h747.get("latency_ms_estimate")
    return {
        "model": m["model"],
        "folder": folder.relative_to(zoo_dir).as_posix(),
        "dataset": folder.name.rsplit("_", 1)[0],
        "input": "x".join(str(v) for v in m["input_shape"]),
        "classes": m["num_classes"],
        "split": f"{m.get('evaluation_split', '?')} ({m.get('int8', {}).get('n', '?')})",
        "float": pct("float"),
        "int8": pct("int8") + _int8_mark(m.get("int8") or {}),
        "qdq": pct("onnx_qdq"),
        "mixed": (f"{pct('mixed')}, weights -{m['mixed']['saving_pct']:.1f} %"
                  if (m.get("mixed") or {}).get("top1") is not None and "saving_pct" in m["mixed"] else "-"),
        "flash": kib(a.get("weights_bytes")),
        "ram": kib(a.get("activation_bytes")),
        "tflm": kib(a.get("tflm_arena_bytes")),
        "latency": f"{lat:.1f} ms (estimate)" if lat else "-",
    }


#: The line of zoo/README.md after which the maintainers' own notes (goals, how far long runs got) begin:
#: :func:`index` rewrites everything above it and keeps the rest as it is.
NOTES_MARKER = "<!-- notes below: kept as written by `mcuzoo zoo index` -->"


def _kept_notes(readme: Path) -> str:
    """The marker line and everything after it in an existing zoo/README.md, else ''."""
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    at = text.find(NOTES_MARKER)
    return "\n" + text[at:].rstrip("\n") + "\n" if at >= 0 else ""


def index(zoo_dir: str | Path = "zoo") -> Path:
    """Rewrite zoo/README.md from the folders' metrics.json and analysis.json; the notes after
    :data:`NOTES_MARKER` stay as they are."""
    zoo_dir = Path(zoo_dir)
    rows = [r for f in sorted(p.parent for p in zoo_dir.glob("*/*/metrics.json")) if (r := _row(f, zoo_dir))]
    lines = [
        "# mcuzoo model zoo",
        "",
        "Pretrained models, each trained from scratch by `mcuzoo run` with the `config.yaml` in its folder,",
        "quantized to int8 (uint8 input, float32 output) and analysed. Every figure below is read from the",
        "folder's `metrics.json` and `analysis.json` (regenerate this table with `mcuzoo zoo index`); the",
        "accuracy is measured on the split named, never used for model selection. Memory and latency are",
        "mcuzoo's estimates (`mcuzoo analyze`), not measurements on a board. Each folder has a `MODEL_CARD.md`.",
        "*activation RAM* is the cards' convention (activations, input and output inside); *TFLM arena* the",
        "whole tensor arena a TensorFlow Lite Micro build needs (`tflm_arena_bytes`: planned tensors plus TFLM's",
        "persistent buffers), checked against the real interpreter's smallest working arena.",
        "",
        "*int8 top-1* is the .tflite model (uint8 input, float32 output), MCU-exact: its outputs are bit-identical",
        "to TensorFlow Lite Micro's (TFLM reference kernels: LiteRT's reference kernels where they match TFLM on",
        "every operator of the model, else TFLM's own interpreter), so it is what the board computes (a figure",
        "that is not says so). *QDQ* is the ONNX QDQ int8 model and *mixed* the ONNX",
        "int4/int8-weights model with the weights flash it saves against all-int8 (`-` when the run did not make",
        "one), both measured with ONNX Runtime.",
        "",
        "| model | dataset | input | classes | evaluated on (images) | float top-1 | int8 top-1 (MCU-exact) | QDQ int8 top-1 | mixed w4/w8 top-1 | weights flash | activation RAM | TFLM arena | STM32H747 @ 400 MHz |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| [{r['model']}]({r['folder']}/MODEL_CARD.md) | {r['dataset']} | {r['input']} | {r['classes']} | "
            f"{r['split']} | {r['float']} | {r['int8']} | {r['qdq']} | {r['mixed']} | {r['flash']} | {r['ram']} | {r['tflm']} | "
            f"{r['latency']} |"
        )
    if not rows:
        lines.append("| (no models yet) | | | | | | | | | | | | |")
    readme = zoo_dir / "README.md"
    return rundir.write_text(readme, "\n".join(lines) + "\n" + _kept_notes(readme))


@dataclass
class Comparison:
    """Two runs' float models on the validation images neither trained on (:func:`compare`)."""

    shared: int  # validation images of both runs
    new_top1: float
    old_top1: float
    diff: "PairedDifference"  # new minus old
    new_val: int  # each run's own validation split, for the record
    old_val: int
    same_test: bool  # both runs hold out the same test images

    @property
    def replace(self) -> bool:
        return self.new_top1 > self.old_top1

    def to_json(self) -> dict:
        return {"shared_validation_images": self.shared, "new_top1": round(self.new_top1, 6),
                "zoo_top1": round(self.old_top1, 6), "paired": self.diff.to_json(), "new_validation_images": self.new_val,
                "zoo_validation_images": self.old_val, "same_test_images": self.same_test, "replace": self.replace}

    def lines(self, new: Path, old: Path) -> list[str]:
        d = self.diff
        verdict = ("replace: the new model scores higher" if self.replace
                   else "keep the zoo model: the new one does not score higher")
        out = [f"{self.shared} validation images held out from both runs (of {self.new_val} in {new} and "
               f"{self.old_val} in {old}); float top-1:",
               f"  new  {100 * self.new_top1:6.2f} %  {new}", f"  zoo  {100 * self.old_top1:6.2f} %  {old}",
               f"  new - zoo {100 * d.diff:+.2f} +- {100 * d.se:.2f} points (paired: {d.b_only} images only the new "
               f"model gets right, {d.a_only} only the zoo's)", verdict]
        if not self.same_test:
            out.append("note: the two runs hold out different test images: their test figures do not compare")
        return out


def compare(run_dir: str | Path, zoo_folder: str | Path) -> Comparison:
    """Score the float models of a new run and of a zoo folder on the same images: the validation images of
    both runs (neither model trained on them; each run chose its model on them; the test split takes no part),
    each model with its own preprocessing. Image files are matched by path, so runs whose validation splits
    differ (another ``validation_split``) still share some images; images in memory (EMNIST, built-in data)
    only when both runs read the same data the same way (equal ``dataset`` sections: the same splits).
    """
    from .config import load_config
    from .data.loading import load_run_dataset
    from .models.scoring import evaluate_model, paired_difference
    from .rundir import read_model_info

    runs = []
    for folder in (Path(run_dir), Path(zoo_folder)):
        for name in (rundir.CONFIG, rundir.FLOAT_MODEL):
            if not (folder / name).is_file():
                raise McuzooError(f"{folder} has no {name}: not a run directory or zoo folder")
        cfg = load_config(folder / rundir.CONFIG)
        runs.append((folder, cfg, load_run_dataset(cfg)))
    (_, new_cfg, new_ds), (_, old_cfg, old_ds) = runs
    if list(new_ds.class_names) != list(old_ds.class_names):
        raise McuzooError(f"{run_dir} and {zoo_folder} have different classes: their models do not compare")
    if new_ds.val.paths is not None and old_ds.val.paths is not None:
        keys = [[os.path.realpath(p) for p in ds.val.paths or []] for _, _, ds in runs]
    elif new_cfg.dataset == old_cfg.dataset and len(new_ds.val) == len(old_ds.val):
        keys = [list(map(str, range(len(new_ds.val))))] * 2  # the same data, split the same way
    else:
        raise McuzooError(f"{run_dir} and {zoo_folder} hold their images in memory and read them differently "
                          "(their dataset sections differ): their validation images cannot be matched")
    shared = sorted(set(keys[0]) & set(keys[1]))
    if not shared:
        raise McuzooError(f"no validation image is held out from both {run_dir} and {zoo_folder}")
    correct = []
    for (folder, cfg, ds), k in zip(runs, keys):
        at = {p: i for i, p in enumerate(k)}
        model = folder / rundir.FLOAT_MODEL
        rescale, offset = rundir.input_scaling(read_model_info(model), cfg)
        res = evaluate_model(model, ds.val.subset([at[p] for p in shared]), list(ds.class_names), rescale, offset,
                             cfg.evaluation.batch_size)
        assert res.correct is not None  # evaluate_model always fills it
        correct.append(res.correct)
    tests = [{os.path.realpath(p) for p in ds.test.paths or []} if ds.test is not None else set() for _, _, ds in runs]
    n_new, n_old = (int(c.sum()) for c in correct)
    return Comparison(len(shared), n_new / len(shared), n_old / len(shared), paired_difference(correct[1], correct[0]),
                      len(new_ds.val), len(old_ds.val), tests[0] == tests[1])


def _compare_cli(args) -> int:
    from .console import print_out

    c = compare(args.run_dir, args.zoo_folder)
    if args.json:
        import json

        print(json.dumps(c.to_json(), indent=2))
        return 0
    for line in c.lines(Path(args.run_dir), Path(args.zoo_folder)):
        print_out(line)
    return 0


def register_cli(sub) -> None:
    z = sub.add_parser("zoo", help="publish a run into the model zoo, or rewrite the zoo's index")
    zsub = z.add_subparsers(dest="zoo_verb", metavar="ZOO_VERB")
    zsub.required = True
    a = zsub.add_parser("add", help="copy a finished run's artifacts into zoo/<model>/<dataset>_<resolution>/")
    a.add_argument("run_dir")
    a.add_argument("--zoo", default="zoo", help="zoo folder (default: zoo)")
    a.set_defaults(fn=lambda args: print(add(args.run_dir, args.zoo)) or 0)
    i = zsub.add_parser("index", help="rewrite zoo/README.md from the folders' JSON files")
    i.add_argument("--zoo", default="zoo")
    i.set_defaults(fn=lambda args: print(index(args.zoo)) or 0)
    c = zsub.add_parser("compare", help="score a new run and a zoo model on the validation images of both: "
                                        "replace the zoo model only when the new one scores higher")
    c.add_argument("run_dir")
    c.add_argument("zoo_folder")
    c.add_argument("--json", action="store_true", help="print the figures as JSON")
    c.set_defaults(fn=_compare_cli)
