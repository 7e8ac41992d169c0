"""Every entry point against every kind of hostile input (issue 16): never an internal error.

The sweep crosses each command of the CLI with hostile versions of the inputs it takes (a config, a model
file, a run directory, a dataset folder, an image, an output folder, a number option), one hostile input
at a time, the others valid, and the disk failing under every command that writes. Each case must end in
success or in exactly one ``mcuzoo: error:`` line; never ``internal error``, a traceback or a library
warning. A case marked ``refuse`` must fail (a success would be the wrong thing), one marked ``ok`` must
succeed; ``any`` accepts both outcomes as long as they are clean.

The hostile inputs follow the kinds of issue 16: non-finite numbers, repeated YAML keys, symlinks in
datasets, paths taken from files, state changed before validation, graphs that lie, unbounded numbers,
the disk, leftovers, text that becomes markup (and lying image headers).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mcuzoo import rundir

REPO = Path(__file__).resolve().parents[1]
TINY = ["name=tiny", "dataset.samples_per_class=6", "training.epochs=1", "training.batch_size=32",
        "quantization.calibration_samples=8", "training.verbose=false", "stages=[train,quantize,evaluate,card]"]


@dataclass(frozen=True)
class Hostile:
    """One hostile input of kind ``kind``: ``make(base, tmp)`` returns what replaces the valid input."""

    kind: str
    name: str
    make: Callable[[dict, Path], str]
    expect: str = "refuse"  # refuse | ok | any
    expect_for: tuple[tuple[str, str], ...] = ()  # (entry point, expectation) where it differs

    def expectation(self, entry: str) -> str:
        return dict(self.expect_for).get(entry, self.expect)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """Valid inputs: a finished tiny run (float + int8 model, model_info.json), a dataset folder of the
    model's 36 classes, an image, a config."""
    from PIL import Image

    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    d = tmp_path_factory.mktemp("entry")
    run_dir = run(load_config(None, TINY + [f"output_dir={d / 'runs'}"]))
    names = rundir.read_json(run_dir / rundir.MODEL_INFO)["class_names"]
    data = d / "data"
    for i, c in enumerate(names):
        (data / c).mkdir(parents=True)
        Image.new("L", (28, 28), (i * 7) % 256).save(data / c / "0.png")
    (d / "img.png").write_bytes((data / names[0] / "0.png").read_bytes())
    return {"run": run_dir, "tflite": run_dir / rundir.INT8_TFLITE, "keras": run_dir / rundir.FLOAT_MODEL,
            "data": data, "image": d / "img.png", "config": run_dir / rundir.CONFIG, "names": names,
            "zoo": d / "zoo"}


# ---------------------------------------------------------------------------
# hostile inputs, by what they replace


def _model_copy(b: dict, tmp: Path, name: str, data: bytes, info: dict | str | None = None) -> str:
    """``data`` saved as ``tmp/m/name`` with the run's model_info.json beside it (or ``info`` instead)."""
    d = tmp / "m"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)
    text = (b["run"] / rundir.MODEL_INFO).read_text() if info is None else (
        info if isinstance(info, str) else json.dumps(info))
    (d / rundir.MODEL_INFO).write_text(text)
    return str(d / name)


def _lied(b: dict, lie) -> bytes:
    from test_hostile_input import _lie

    bad, lied = _lie(b["tflite"].read_bytes(), lie)
    assert lied
    return bad


def _info(b: dict, **change) -> dict:
    info = rundir.read_json(b["run"] / rundir.MODEL_INFO)
    info.update(change)
    return info


def _lambda_keras(tmp: Path) -> bytes:
    import keras

    m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x * 2.0),
                          keras.layers.Flatten(), keras.layers.Dense(36)])
    m.save(tmp / "lambda.keras")
    return (tmp / "lambda.keras").read_bytes()


def _onnx_twice(tmp: Path) -> bytes:
    from conftest import tiny_float_onnx

    m = tiny_float_onnx(np.random.default_rng(0), 1)
    m.graph.node[1].output[0] = m.graph.node[0].output[0]
    return m.SerializeToString()


MODELS = [
    Hostile("graph lies", "tflite tensor 5000", lambda b, t: _model_copy(b, t, "m.tflite", _lied(b, ("index", 1, False, 0, 5000)))),
    Hostile("graph lies", "tflite tensor -7", lambda b, t: _model_copy(b, t, "m.tflite", _lied(b, ("index", 1, False, 0, -7)))),
    Hostile("graph lies", "tflite cycle", lambda b, t: _model_copy(b, t, "m.tflite", _lied(b, ("cycle", 0, False, 0, 0)))),
    Hostile("graph lies", "tflite graph output 10**5", lambda b, t: _model_copy(b, t, "m.tflite", _lied(b, ("graph_io", False, 0, 0, 10**5)))),
    Hostile("graph lies", "onnx tensor written twice", lambda b, t: _model_copy(b, t, "m.onnx", _onnx_twice(t))),
    Hostile("malformed", "tflite truncated", lambda b, t: _model_copy(b, t, "m.tflite", b["tflite"].read_bytes()[:700])),
    Hostile("malformed", "empty .tflite", lambda b, t: _model_copy(b, t, "m.tflite", b"")),
    Hostile("malformed", "PNG named .keras", lambda b, t: _model_copy(b, t, "m.keras", b["image"].read_bytes())),
    Hostile("code", "keras Lambda layer", lambda b, t: _model_copy(b, t, "m.keras", _lambda_keras(t))),
    Hostile("non-finite", "model_info.json with NaN", lambda b, t: _model_copy(
        b, t, "m.tflite", b["tflite"].read_bytes(), (b["run"] / rundir.MODEL_INFO).read_text().replace(
            "{", '{"nan_here": NaN, ', 1))),
    Hostile("duplicates", "model_info.json key twice", lambda b, t: _model_copy(
        b, t, "m.tflite", b["tflite"].read_bytes(), (b["run"] / rundir.MODEL_INFO).read_text().replace(
            "{", '{"class_names": ["a", "b"], ', 1))),
    Hostile("markup", "class names with newline and backtick", lambda b, t: _model_copy(
        b, t, "m.tflite", b["tflite"].read_bytes(),
        _info(b, class_names=[f"c{i}\n`x`|*" for i in range(len(b["names"]))])), "any"),
    Hostile("unbounded", "model_info.json with 3 names for 36 outputs", lambda b, t: _model_copy(
        b, t, "m.tflite", b["tflite"].read_bytes(), _info(b, class_names=["a", "b", "c"])),
        expect_for=(("export", "any"),)),  # export leaves the labels out and says so; the firmware needs none
    Hostile("paths", "model_info.json is a folder", lambda b, t: _model_info_folder(b, t)),
    Hostile("filesystem", "model is a folder", lambda b, t: _mkdir(t / "m.tflite")),
    Hostile("filesystem", "model is a symlink loop", lambda b, t: _link_loop(t / "m.tflite")),
    Hostile("filesystem", "model is a FIFO", lambda b, t: _fifo(t / "m.tflite")),
]


def _model_info_folder(b: dict, t: Path) -> str:
    p = _model_copy(b, t, "m.tflite", b["tflite"].read_bytes())
    (t / "m" / rundir.MODEL_INFO).unlink()
    (t / "m" / rundir.MODEL_INFO).mkdir()
    return p


def _mkdir(p: Path) -> str:
    p.mkdir(parents=True)
    return str(p)


def _link_loop(p: Path) -> str:
    p.symlink_to(p)
    return str(p)


def _fifo(p: Path) -> str:
    os.mkfifo(p)
    return str(p)


def _png_header_only(w: int, h: int) -> bytes:
    from test_hostile_input import _png_header_only as png

    return png(w, h, rows=2)


def _image(t: Path, name: str, data: bytes) -> str:
    (t / name).write_bytes(data)
    return str(t / name)


IMAGES = [
    Hostile("lying header", "PNG declaring 64x200 with 2 rows", lambda b, t: _image(t, "liar.png", _png_header_only(64, 200))),
    Hostile("bomb", "PNG declaring 2**30 pixels", lambda b, t: _image(t, "bomb.png", _png_header_only(32768, 32768))),
    Hostile("malformed", "empty .png", lambda b, t: _image(t, "e.png", b"")),
    Hostile("malformed", "text named .jpg", lambda b, t: _image(t, "t.jpg", b"hello\n" * 10)),
    Hostile("filesystem", "image folder with a symlink loop", lambda b, t: _image_loop_folder(b, t), "ok"),
    Hostile("filesystem", "image is a FIFO", lambda b, t: _fifo(t / "f.png")),
    Hostile("filesystem", "folder without images", lambda b, t: _mkdir(t / "noimg")),
]


def _image_loop_folder(b: dict, t: Path) -> str:
    d = t / "imgs"
    d.mkdir()
    shutil.copy(b["image"], d / "a.png")
    (d / "loop").symlink_to(d)
    return str(d)


def _data_copy(b: dict, t: Path) -> Path:
    d = t / "data"
    shutil.copytree(b["data"], d, symlinks=True)
    return d


def _data_with(b: dict, t: Path, change: Callable[[Path, list[str]], None]) -> str:
    d = _data_copy(b, t)
    change(d, b["names"])
    return str(d)


DATA = [
    Hostile("symlinks", "class folder links to itself", lambda b, t: _data_with(
        b, t, lambda d, n: (d / n[0] / "loop").symlink_to(d / n[0])), "ok"),
    Hostile("symlinks", "class folder links to another class", lambda b, t: _data_with(
        b, t, lambda d, n: (d / n[0] / "other").symlink_to(d / n[1]))),
    Hostile("lying header", "one PNG lies about its size", lambda b, t: _data_with(
        b, t, lambda d, n: (d / n[2] / "0.png").write_bytes(_png_header_only(28, 280)))),
    Hostile("markup", "extra class named with a newline and backtick", lambda b, t: _data_with(
        b, t, lambda d, n: shutil.copytree(d / n[0], d / "bad\n`name`"))),
    Hostile("malformed", "empty folder", lambda b, t: _mkdir(t / "empty")),
    Hostile("filesystem", "dataset is a file", lambda b, t: _image(t, "file", b"x")),
]


def _config(b: dict, t: Path, edit: Callable[[str], str] | None = None, raw: bytes | None = None) -> str:
    p = t / "c.yaml"
    if raw is not None:
        p.write_bytes(raw)
    else:
        text = b["config"].read_text()
        p.write_text(edit(text) if edit else text)
    return str(p)


def _set(key: str, value: str) -> Callable[[str], str]:
    """A config text with ``section.key`` set to ``value`` by appending a fresh section (kept valid YAML)."""
    section, leaf = key.split(".")

    def edit(text: str) -> str:
        out, inside = [], False
        for line in text.splitlines():
            if line.startswith(f"{section}:"):
                inside = True
                out.append(line)
                out.append(f"  {leaf}: {value}")
                continue
            if inside and line.startswith(f"  {leaf}:"):
                continue
            if line and not line.startswith(" "):
                inside = False
            out.append(line)
        return "\n".join(out) + "\n"

    return edit


CONFIGS = [
    Hostile("non-finite", "preprocessing.rescale .inf", lambda b, t: _config(b, t, _set("preprocessing.rescale", ".inf"))),
    Hostile("non-finite", "preprocessing.offset .nan", lambda b, t: _config(b, t, _set("preprocessing.offset", ".nan"))),
    Hostile("non-finite", "model.dropout 1e999", lambda b, t: _config(b, t, _set("model.dropout", "1e999"))),
    Hostile("duplicates", "training section twice", lambda b, t: _config(b, t, lambda s: s + "training:\n  epochs: 2\n")),
    Hostile("duplicates", "a key twice in one section", lambda b, t: _config(
        b, t, lambda s: s.replace("dataset:\n", "dataset:\n  seed: 1\n  seed: 2\n", 1))),
    Hostile("unbounded", "training.seed -1", lambda b, t: _config(b, t, _set("training.seed", "-1"))),
    Hostile("unbounded", "dataset.samples_per_class 10**12", lambda b, t: _config(
        b, t, _set("dataset.samples_per_class", "1000000000000"))),
    Hostile("unbounded", "model.input_shape [0, 28, 1]", lambda b, t: _config(b, t, _set("model.input_shape", "[0, 28, 1]"))),
    Hostile("unknown", "an unknown key", lambda b, t: _config(b, t, _set("training.epochz", "3"))),
    Hostile("code", "a python/object tag", lambda b, t: _config(
        b, t, lambda s: s + "x: !!python/object/apply:os.system ['touch /tmp/mcuzoo_pwned']\n")),
    Hostile("malformed", "not UTF-8", lambda b, t: _config(b, t, raw=b"name: \xff\xfe\x00bad\n")),
    Hostile("malformed", "a YAML list", lambda b, t: _config(b, t, raw=b"- 1\n- 2\n")),
    Hostile("paths", "dataset path through a symlink loop", lambda b, t: _config(
        b, t, lambda s: _set("dataset.path", str(_link_loop(t / "loopdata")))(_set("dataset.name", "folder")(s))),
        expect_for=(("config", "any"),)),
    Hostile("filesystem", "config is a folder", lambda b, t: _mkdir(t / "c.yaml")),
    Hostile("filesystem", "config is a FIFO", lambda b, t: _fifo(t / "c.yaml")),
]


def _run_copy(b: dict, t: Path, change: Callable[[Path], None] | None = None) -> str:
    d = t / "run"
    shutil.copytree(b["run"], d, symlinks=True)
    if change:
        change(d)
    return str(d)


def _edit_json(name: str, edit: Callable[[str], str]) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        (d / name).write_text(edit((d / name).read_text()))

    return change


def _json_set(name: str, key: str, value) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        doc = json.loads((d / name).read_text())
        doc[key] = value
        (d / name).write_text(json.dumps(doc))

    return change


def _leftovers(d: Path) -> None:
    (d / ".metrics.abcd1234.tmp.json").write_text("{half")
    (d / rundir.LOCK_NAME).write_text("1 0\n")  # pid 1: alive, but not an mcuzoo run


#: commands that work on a run without reading its metrics.json: quantize (float model, config) and resume
#: (training state; the run's stages rewrite metrics.json)
NEEDS_NO_METRICS = (("quantize", "any"), ("resume", "any"), ("export run", "any"), ("zoo compare", "any"))

RUNS = [
    Hostile("non-finite", "metrics.json holds NaN", lambda b, t: _run_copy(b, t, _edit_json(
        rundir.METRICS, lambda s: s.replace("{", '{"x": NaN, ', 1))), expect_for=NEEDS_NO_METRICS),
    Hostile("duplicates", "metrics.json key twice", lambda b, t: _run_copy(b, t, _edit_json(
        rundir.METRICS, lambda s: s.replace("{", '{"model": "other", ', 1))), expect_for=NEEDS_NO_METRICS),
    Hostile("paths", "metrics.json model name ../../evil", lambda b, t: _run_copy(
        b, t, _json_set(rundir.METRICS, "model", "../../evil")), "any", (("zoo add", "refuse"),)),
    Hostile("paths", "metrics.json dataset name /etc", lambda b, t: _run_copy(
        b, t, _json_set(rundir.METRICS, "dataset", "/etc")), "any"),
    Hostile("markup", "model_info class names with markup", lambda b, t: _run_copy(b, t, _json_set(
        rundir.MODEL_INFO, "class_names", [f"c{i}\n`x`|<b>" for i in range(len(b["names"]))])), "any"),
    Hostile("duplicates", "config.yaml section twice", lambda b, t: _run_copy(
        b, t, lambda d: (d / rundir.CONFIG).write_text((d / rundir.CONFIG).read_text() + "training:\n  epochs: 1\n")),
        expect_for=(("export run", "any"),)),  # export reads the .tflite alone
    Hostile("leftovers", "temp files and a lock of pid 1", lambda b, t: _run_copy(b, t, _leftovers), "ok"),
    Hostile("malformed", "metrics.json missing", lambda b, t: _run_copy(b, t, lambda d: (d / rundir.METRICS).unlink()),
            expect_for=NEEDS_NO_METRICS),
    # the card says "not measured (no readable model_int8.tflite)"; resume re-quantizes; quantize re-reads the float model
    Hostile("malformed", "int8 model truncated", lambda b, t: _run_copy(b, t, lambda d: (d / rundir.INT8_TFLITE).write_bytes(
        (d / rundir.INT8_TFLITE).read_bytes()[:500])), "any", (("export", "refuse"), ("zoo add", "refuse"))),
    Hostile("filesystem", "run directory is a file", lambda b, t: _image(t, "run", b"x")),
]


def _under_a_file(t: Path) -> str:
    (t / "plainfile").write_text("x")
    return str(t / "plainfile" / "sub")


OUTS = [
    Hostile("disk", "output below a regular file", lambda b, t: _under_a_file(t)),
    Hostile("filesystem", "output is a symlink loop", lambda b, t: _link_loop(t / "outloop")),
]

NUMBERS = {
    "--batch-size": ["0", "-1", "1000000000000", "nan", "x"],
    "--top-k": ["0", "-3", "1000000000000"],
    "--rescale": ["nan", "inf", "-inf", "1e999"],
    "--offset": ["nan", "-inf"],
    "--workers": ["-1", "65", "100000"],
    "--classes": ["0", "-1", "1000000000", "1e3"],
    "--input-shape": ["0,28,1", "28,28,-1", "100000,100000,3", "a,b,c"],
    "--mhz": ["0", "-400", "nan", "inf"],
    "--flash": ["-1", "nan", "1e999"],
    "--ram": ["-5", "abc", "nan"],
    "--calibration-samples": ["0", "-1", "1000000000000"],
    "--tolerance": ["nan", "-1", "inf"],
    "--max-evals": ["0", "-1"],
    "--n": ["0", "-1", "1000000000"],
    "--seed": ["-1", "1e40"],
}

# ---------------------------------------------------------------------------
# the entry points: argv with {model} {data} {image} {config} {run} {out} {zoo} placeholders


ENTRY_POINTS = {
    "config": ["config", "{config}"],
    "models": ["models", "--classes", "10", "--input-shape", "28,28,1"],
    "evaluate": ["evaluate", "{model}", "{data}", "--batch-size", "16", "--rescale", "0.00784313725490196",
                 "--offset", "-1", "--workers", "1"],
    "analyze": ["analyze", "{model}", "--no-host-latency", "--mhz", "400", "--flash", "2MiB", "--ram", "1MiB"],
    "export": ["export", "{model}", "--out", "{out}"],
    "predict": ["predict", "{model}", "{image}", "--top-k", "3", "--batch-size", "4", "--rescale", "0.00784313725490196",
                "--offset", "-1"],
    "card": ["card", "{run}", "--no-plots"],
    "card with plots": ["card", "{run}"],
    "quantize": ["quantize", "{run}", "--report", "--report-images", "4", "--calibration-samples", "8"],
    "data info": ["data", "info", "{config}"],
    "data preview": ["data", "preview", "{config}", "--out", "{out}/p.png", "--n", "4", "--seed", "0"],
    "zoo add": ["zoo", "add", "{run}", "--zoo", "{zoo}"],
    "zoo index": ["zoo", "index", "--zoo", "{zoo}"],
    "zoo compare": ["zoo", "compare", "{run}", "{run}"],
    "run": ["run", "{config}", "output_dir={out}", "training.epochs=1", "stages=[train]"],
    "resume": ["run", "--resume", "{run}"],
    "export run": ["export", "{run}", "--out", "{out}"],
}

HOSTILE_FOR = {"model": MODELS, "image": IMAGES, "data": DATA, "config": CONFIGS, "run": RUNS, "out": OUTS}

#: (entry point, placeholder) pairs where the export of a .tflite is the only model input that applies
MODEL_SUFFIX_ONLY = {"export": (".tflite",)}


def _valid(b: dict, t: Path) -> dict:
    return {"model": str(b["tflite"]), "data": str(b["data"]), "image": str(b["image"]), "config": str(b["config"]),
            "run": _run_copy(b, t / "valid"), "out": str(t / "out"), "zoo": str(t / "zoo")}


def _cases():
    for ep, argv in ENTRY_POINTS.items():
        for slot, hostiles in HOSTILE_FOR.items():
            if "{" + slot + "}" not in " ".join(argv):
                continue
            for h in hostiles:
                yield pytest.param(ep, slot, h, id=f"{ep}-{slot}-{h.name}")


def _substitute(argv: list[str], values: dict) -> list[str]:
    out = []
    for a in argv:
        for k, v in values.items():
            a = a.replace("{" + k + "}", v)
        out.append(a)
    return out


def _outcome(argv: list[str], capsys) -> tuple[int, str, str]:
    from mcuzoo.cli import main

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    leaked = [str(w.message) for w in caught]
    return code, out.out, out.err + "".join(f"\nWarning: {m}" for m in leaked)


def check_clean(code: int, out: str, err: str, expect: str, what: str) -> None:
    """No internal error, no traceback, no warning; a failure is exactly one ``mcuzoo: error:`` line."""
    text = out + err
    assert "internal error" not in text and "Traceback" not in text, f"{what}:\n{text[-3000:]}"
    assert not [ln for ln in err.splitlines() if "Warning" in ln], f"{what}:\n{err[-3000:]}"
    if code != 0:
        errs = [ln for ln in err.splitlines() if ln.startswith("mcuzoo: error: ")]
        assert len(errs) == 1 and "\n" not in errs[0], f"{what}: rc {code}\n{err[-3000:]}"
    if expect == "refuse":
        assert code != 0, f"{what}: rc 0 for an input that must be refused\n{text[-3000:]}"
    elif expect == "ok":
        assert code == 0, f"{what}: rc {code}\n{text[-3000:]}"


@pytest.mark.parametrize("entry, slot, hostile", list(_cases()))
def test_every_entry_point_is_clean_on_every_hostile_input(entry, slot, hostile, base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = _valid(base, tmp_path)
    work = tmp_path / "hostile"
    work.mkdir()
    values[slot] = hostile.make(base, work)
    expect = hostile.expectation(entry)
    if slot == "model" and entry in MODEL_SUFFIX_ONLY and not values["model"].endswith(MODEL_SUFFIX_ONLY[entry]):
        expect = "refuse"
    check_clean(*_outcome(_substitute(ENTRY_POINTS[entry], values), capsys), expect, f"{entry} / {hostile.name}")
    assert not Path("/tmp/mcuzoo_pwned").exists()


def _number_cases():
    for ep, argv in ENTRY_POINTS.items():
        for i, a in enumerate(argv):
            for bad in NUMBERS.get(a, []):
                yield pytest.param(ep, i + 1, bad, id=f"{ep}-{a}={bad}")


@pytest.mark.parametrize("entry, index, bad", list(_number_cases()))
def test_every_number_option_is_bounded(entry, index, bad, base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = _substitute(ENTRY_POINTS[entry], _valid(base, tmp_path))
    argv[index] = bad
    check_clean(*_outcome(argv, capsys), "refuse", f"{entry} {argv[index - 1]} {bad}")


WRITERS = ["export", "export run", "card", "card with plots", "quantize", "data preview", "zoo add", "zoo index", "run"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
@pytest.mark.parametrize("entry", WRITERS)
def test_a_failing_disk_under_every_writer_is_one_line_and_changes_nothing(entry, code, base, tmp_path, capsys,
                                                                            monkeypatch):
    """Every atomic write fails (full disk, read-only file system, I/O error): one line naming a path; the
    files that were there before are unchanged and no temporary file is left."""
    import tempfile

    monkeypatch.chdir(tmp_path)
    values = _valid(base, tmp_path)
    if entry == "zoo index":
        from mcuzoo import zoo

        zoo.add(values["run"], values["zoo"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def boom(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", boom)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", boom)
    monkeypatch.setattr(tempfile, "mkdtemp", boom)
    exit_code, out, err = _outcome(_substitute(ENTRY_POINTS[entry], values), capsys)
    check_clean(exit_code, out, err, "refuse", f"{entry} with {errno.errorcode[code]}")
    assert os.strerror(code) in err, err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p in before} == before
    assert not [p for p in tmp_path.rglob("*") if rundir.TEMP_RE.match(p.name)]


def test_the_sweep_covers_every_verb_and_kind():
    """Every CLI verb has an entry here, and every kind of issue 16 is among the hostile inputs."""
    import argparse

    from mcuzoo.cli import build_parser

    parser = build_parser()
    verbs = {a for act in parser._actions if isinstance(act, argparse._SubParsersAction) for a in act.choices}
    covered = {argv[0] for argv in ENTRY_POINTS.values()}
    assert verbs <= covered, verbs - covered
    kinds = {h.kind for hs in HOSTILE_FOR.values() for h in hs}
    assert {"non-finite", "duplicates", "symlinks", "paths", "graph lies", "unbounded", "disk", "leftovers",
            "markup", "lying header"} <= kinds
    assert len(list(_cases())) > 150
