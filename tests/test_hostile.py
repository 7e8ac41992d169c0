"""Nothing lost, nothing executed: hostile inputs, kills mid-write, concurrent runs, resource bombs.

- No code runs from inputs: configs are data (``yaml.safe_load``), ``.keras`` files load with
  Keras' safe mode on (Lambda bytecode, imports of arbitrary modules, ``TFSMLayer`` and the known
  safe-mode bypasses are refused), and nothing in the package unpickles or evaluates user data.
- Artifacts are atomic: a writer SIGKILLed at random moments never leaves a partial file under the
  real name, and leftover temp files are never picked up.
- A run directory has one writer: a second ``mcuzoo run --resume`` is refused with one line.
- Resource bombs (huge declared images, absurd tensor shapes, many tiny files) end in a one-line
  error or bounded memory, never an out-of-memory kill.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import gzip
import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_float_onnx

from mcuzoo import rundir
from mcuzoo.errors import ConfigError, DataError, ModelFileError

SRC = Path(__file__).resolve().parents[1] / "src" / "mcuzoo"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def one_line_error(err: str, code: int | None = None) -> str:
    """The single ``mcuzoo: error: ...`` line of a CLI run's stderr (TF chatter aside)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("mcuzoo:")]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("mcuzoo: error: "), lines[0]
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


def cli(argv, capsys):
    from mcuzoo.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------
# 1. configs are data


YAML_PAYLOADS = {
    "object_apply": "model:\n  name: !!python/object/apply:os.system ['touch {marker}']\n",
    "object_new": "name: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
    "name_tag": "name: !!python/name:os.system\n",
    "module_tag": "training: !!python/module:os\n",
    "object_tag": "model: !!python/object:pathlib.PosixPath {{}}\n",
    "top_level_apply": "!!python/object/apply:os.system ['touch {marker}']\n",
}


@pytest.mark.parametrize("kind", sorted(YAML_PAYLOADS))
def test_yaml_python_tags_are_refused_never_run(kind, tmp_path, capsys):
    from mcuzoo.config import load_config

    marker = tmp_path / "MARKER"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(YAML_PAYLOADS[kind].format(marker=marker))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "\n" not in str(e.value) and "not valid YAML" in str(e.value)
    code, _, err = cli(["run", cfg], capsys)
    assert code == 2
    one_line_error(err)
    assert not marker.exists()


def test_override_with_a_python_tag_stays_a_string(tmp_path):
    from mcuzoo.config import load_config, parse_override

    marker = tmp_path / "MARKER"
    _, value = parse_override(f"model.name=!!python/object/apply:os.system ['touch {marker}']")
    assert isinstance(value, str)
    with pytest.raises(ConfigError):
        load_config(None, [f"name=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


ALIAS_BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{p}' if p else 'x'] * 10)}]\n"
    for p, a in zip([""] + list("abcdefg"), "abcdefgh")
)


@pytest.mark.parametrize("text, why", [
    ("training:\n  epochs: " + "9" * 5000 + "\n", "cannot be read"),        # int beyond Python's digit limit
    ("name: 2001-13-45\n", "cannot be read"),                              # a timestamp YAML matches, Python refuses
    ("name: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),     # RecursionError in the YAML composer
    ("name: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n", "nested too deeply"),
    (ALIAS_BOMB.replace("h: &h", "name: &h"), "valid string"),             # 10^8 list items through aliases
    ("name: &a [*a]\n", "valid string"),                                   # self-referencing list
])
def test_yaml_values_python_cannot_build_are_one_line_config_errors(text, why, tmp_path):
    from mcuzoo.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=why) as e:
        load_config(cfg)
    assert time.perf_counter() - t0 < 10
    assert "\n" not in str(e.value) and len(str(e.value)) < 600


@pytest.mark.parametrize("override", ["training.epochs=" + "9" * 5000, "name=2001-13-45", "name=" + "[" * 3000])
def test_unreadable_override_values_are_config_errors(override):
    from mcuzoo.config import load_config

    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(None, [override])


# ---------------------------------------------------------------------------
# 1. .keras files load in safe mode: no code from the file runs


@pytest.fixture(scope="module")
def keras_base(tmp_path_factory):
    """A tiny Dense model saved as .keras: {member name: bytes} of its zip, and its config."""
    import keras

    d = tmp_path_factory.mktemp("keras_base")
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Dense(3, name="d")(inp))
    model.save(d / "base.keras")
    with zipfile.ZipFile(d / "base.keras") as z:
        files = {n: z.read(n) for n in z.namelist()}
    return files, json.loads(files["config.json"])


def write_keras(path: Path, files: dict, config: dict | None = None, extra: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, json.dumps(config) if name == "config.json" and config is not None else data)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def _dense(cfg):
    return cfg["config"]["layers"][1]


def _fn(module, name):
    return {"module": module, "class_name": "function", "config": name, "registered_name": "function"}


def _payload(kind: str, base: dict, tmp: Path) -> dict:
    """A config.json that would run code (or touch files) if Keras honoured it."""
    c = copy.deepcopy(base)
    layer = _dense(c)
    if kind == "os_system_layer":
        layer.update(module="os", class_name="system", config={"command": f"touch {tmp / 'MARKER'}"})
    elif kind == "os_system_activation":
        layer["config"]["activation"] = _fn("os", "system")
    elif kind == "builtins_exec":
        layer["config"]["activation"] = _fn("builtins", "exec")
    elif kind == "import_any_module":  # a module that writes the marker when imported
        layer["config"]["activation"] = _fn("mcuzoo_evil_payload", "boom")
    elif kind == "import_any_class":
        layer.update(module="mcuzoo_evil_payload", class_name="Evil")
    elif kind == "enable_unsafe_deserialization":  # CVE-2025-9906: switch safe mode off from the file
        layer["config"]["activation"] = _fn("keras.config", "enable_unsafe_deserialization")
    elif kind == "get_file":  # CVE-2025-8747: a non-modeling keras API
        layer.update(module="keras.utils", class_name="get_file",
                     config={"fname": "x.txt", "origin": f"file://{tmp / 'origin.txt'}", "cache_dir": str(tmp / "cache")})
    elif kind == "tfsm_layer":  # an external SavedModel whose function writes the marker
        layer.update(module="keras.layers", class_name="TFSMLayer",
                     config={"name": "d", "filepath": str(tmp / "savedmodel"), "call_endpoint": "serve", "trainable": False})
    else:  # pragma: no cover
        raise ValueError(kind)
    return c


KERAS_PAYLOADS = ["os_system_layer", "os_system_activation", "builtins_exec", "import_any_module",
                  "import_any_class", "enable_unsafe_deserialization", "get_file", "tfsm_layer"]


@pytest.fixture
def evil_env(tmp_path, monkeypatch):
    """A marker-writing module on sys.path, os.system recorded, and a SavedModel that writes the marker."""
    marker = tmp_path / "MARKER"
    (tmp_path / "mcuzoo_evil_payload.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")
        def boom(*a, **k):
            pathlib.Path({str(marker)!r}).write_text("called")
            return a[0] if a else None
        class Evil:
            @classmethod
            def from_config(cls, config):
                pathlib.Path({str(marker)!r}).write_text("from_config")
                return cls()
    """))
    (tmp_path / "origin.txt").write_text("downloaded")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    return tmp_path, marker, calls


def _savedmodel(path: Path, marker: Path) -> None:
    import tensorflow as tf

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(marker), "ran")
            return x

    tf.saved_model.save(M(), str(path))


@pytest.mark.parametrize("kind", KERAS_PAYLOADS)
def test_keras_files_cannot_run_code(kind, keras_base, evil_env, capsys):
    from mcuzoo.evaluate import open_model
    from mcuzoo.models import load_keras_model

    files, base = keras_base
    tmp, marker, calls = evil_env
    if kind == "tfsm_layer":
        _savedmodel(tmp / "savedmodel", marker)
        marker.unlink(missing_ok=True)
    path = write_keras(tmp / f"{kind}.keras", files, _payload(kind, base, tmp))
    with pytest.raises(ModelFileError) as e:
        load_keras_model(path)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelFileError):
        open_model(path, 1 / 127.5, -1.0)
    code, _, err = cli(["analyze", path, "--no-host-latency"], capsys)
    assert code == 1
    one_line_error(err)
    assert not marker.exists() and not calls
    assert not (tmp / "cache").exists()
    assert "mcuzoo_evil_payload" not in sys.modules


def test_keras_lambda_bytecode_is_refused_and_safe_mode_stays_on(keras_base, tmp_path):
    """A Lambda layer's marshalled bytecode (here: write a marker file) never runs, before or after
    a file that tries to switch safe mode off."""
    import keras

    from mcuzoo.models import load_keras_model

    marker = tmp_path / "MARKER"
    target = str(marker)  # the closure holds a plain string, which Keras serializes with the bytecode
    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda x: (__import__("pathlib").Path(target).write_text("pwn"), x)[1])(inp)
    model = keras.Model(inp, out)
    model.save(tmp_path / "lambda.keras")
    marker.unlink()  # building the model ran the lambda once, here, on purpose
    cfg = json.loads(zipfile.ZipFile(tmp_path / "lambda.keras").read("config.json"))
    assert cfg["config"]["layers"][1]["config"]["function"]["class_name"] == "__lambda__"  # bytecode inside

    files, base = keras_base
    unsafe = write_keras(tmp_path / "unsafe.keras", files, _payload("enable_unsafe_deserialization", base, tmp_path))
    for path in (tmp_path / "lambda.keras", unsafe, tmp_path / "lambda.keras"):
        with pytest.raises(ModelFileError, match="cannot load Keras model"):
            load_keras_model(path)
    assert not marker.exists()


def test_keras_zip_member_names_cannot_escape(keras_base, tmp_path):
    """Members named ``../x`` or absolute paths in a .keras zip are never written outside."""
    from mcuzoo.models import load_keras_model

    files, _ = keras_base
    outside = tmp_path / "escaped.txt"
    extra = {f"../../../../../../..{outside}": b"x", f"assets/../../{outside.name}": b"x", str(outside): b"x"}
    (tmp_path / "d").mkdir()
    path = write_keras(tmp_path / "d" / "slip.keras", files, None, extra)
    try:
        load_keras_model(path)
    except ModelFileError:
        pass
    assert not outside.exists()


# ---------------------------------------------------------------------------
# 1. nothing unpickles or evaluates user data


FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "torch"}
BUILTIN_CALLS = {"eval", "exec", "compile", "__import__"}  # as builtins: re.compile, model.compile are fine
FORBIDDEN_CALLS = {"unsafe_load", "full_load", "enable_unsafe_deserialization", "import_module"}


def test_the_package_never_unpickles_or_evaluates():
    """Source scan: no pickle-like modules, no eval/exec, no np.load(allow_pickle=True), no yaml.load,
    no Keras load without safe mode, no SavedModel loading."""
    problems = []
    for py in sorted(SRC.rglob("*.py")):
        tree = ast.parse(py.read_text(encoding="utf-8"), filename=str(py))
        for node in ast.walk(tree):
            where = f"{py.relative_to(SRC.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                problems += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
                problems.append(f"{where} imports from {node.module}")
            elif isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                dotted = ast.unparse(f)
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if name in FORBIDDEN_CALLS or (name in BUILTIN_CALLS and dotted in (name, f"builtins.{name}")):
                    problems.append(f"{where} calls {dotted}")
                if name == "load" and dotted.startswith(("np.", "numpy.")) and kw.get("allow_pickle") not in (None, "False"):
                    problems.append(f"{where} {dotted}(allow_pickle={kw.get('allow_pickle')})")
                if dotted in ("yaml.load", "yaml.load_all"):
                    problems.append(f"{where} calls {dotted} (use yaml.safe_load)")
                if name == "load_model" and kw.get("safe_mode") != "True":
                    problems.append(f"{where} calls {dotted} without safe_mode=True")
                if dotted.endswith(("saved_model.load", "TFSMLayer")):
                    problems.append(f"{where} calls {dotted}")
    assert not problems, "\n".join(problems)


def test_reading_every_kind_of_user_file_never_unpickles(tmp_path, monkeypatch, keras_base):
    """Runtime check: with pickle and marshal loading disabled, every reader of user files still works."""
    import marshal
    import pickle

    from PIL import Image

    from mcuzoo.analysis import analyze
    from mcuzoo.config import load_config
    from mcuzoo.data import load_eval_split
    from mcuzoo.evaluate import open_model
    from mcuzoo.predict import load_image
    from mcuzoo.models import load_keras_model

    # the user files, written before the trap is set
    (tmp_path / "c.yaml").write_text("training:\n  epochs: 2\n")
    em = tmp_path / "emnist"
    em.mkdir()
    labels = np.arange(8, dtype=np.uint8) % 3
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    for name, arr, magic in (("labels-idx1-ubyte", labels, 0x801), ("images-idx3-ubyte", images, 0x803)):
        head = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
        (em / f"emnist-byclass-train-{name}.gz").write_bytes(gzip.compress(head + arr.tobytes()))
    (em / "emnist-byclass-mapping.txt").write_text("0 48\n1 49\n2 50\n")
    folder = tmp_path / "folder"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        Image.new("RGB", (12, 10), (200, 10, 10)).save(folder / cls / "x.png")
    files, _ = keras_base
    write_keras(tmp_path / "m.keras", files)
    tfl, onx = _tiny_tflite(tmp_path), _tiny_onnx(tmp_path)

    def trap(*a, **k):
        raise AssertionError("unpickling of data was attempted")

    real_marshal_loads = marshal.loads

    def marshal_trap(data, *a, **k):  # the import system unmarshals .pyc files: that is code we ship
        caller = sys._getframe(1).f_code.co_filename
        if "importlib" not in caller:
            raise AssertionError(f"unmarshalling of data was attempted from {caller}")
        return real_marshal_loads(data, *a, **k)

    for n in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, n, trap)
    monkeypatch.setattr(marshal, "loads", marshal_trap)
    monkeypatch.setattr(marshal, "load", trap)
    load_config(tmp_path / "c.yaml", ["training.batch_size=8"])
    assert len(load_eval_split(str(em), (28, 28, 1))[0]) == 8
    split, names = load_eval_split(str(folder), (8, 8, 3))
    assert names == ["a", "b"] and split.to_numpy()[0].shape == (2, 8, 8, 3)
    assert load_image(folder / "a" / "x.png", (8, 8, 3)).shape == (8, 8, 3)
    load_keras_model(tmp_path / "m.keras")
    for model in (tfl, onx, tmp_path / "m.keras"):
        open_model(model, 1 / 127.5, -1.0)
        analyze(model, host_runs=1)


# ---------------------------------------------------------------------------
# small valid models, shared with the fuzz tests


def _tiny_onnx(d: Path) -> Path:
    """Conv 3x3 (3->4) -> Relu -> GAP -> Flatten -> Gemm(4->3) -> Softmax, NCHW float input (1, 3, 8, 8)."""
    import onnx

    rng = np.random.default_rng(0)
    m = tiny_float_onnx(rng, 1)
    onnx.save(m, d / "tiny.onnx")
    return d / "tiny.onnx"


def _tiny_tflite(d: Path) -> Path:
    """conftest's tiny float .tflite, written to ``d / "tiny.tflite"``."""
    from conftest import tiny_tflite_bytes

    (d / "tiny.tflite").write_bytes(tiny_tflite_bytes())
    return d / "tiny.tflite"


# ---------------------------------------------------------------------------
# 2. kill during write: the real name is absent or complete, never partial

WRITER = r"""
import hashlib, json, os, sys
from mcuzoo import rundir
d, start = sys.argv[1], int(sys.argv[2])
rnd = os.urandom(1 << 16)
i = start
while True:
    body = (rnd * (16 + i % 48))[: (1 << 20) + 4099 * i]          # 1-4 MB, a different size every time
    rundir.write_bytes(os.path.join(d, "blob.bin"),
                       i.to_bytes(8, "big") + hashlib.sha256(body).digest() + body)
    rundir.write_json(os.path.join(d, "big.json"),
                      {"version": i, "n": len(body) // 8, "data": body[: len(body) // 8].hex()})
    i += 1
"""


def _check_blob(path: Path) -> int | None:
    if not path.exists():
        return None
    raw = path.read_bytes()
    assert len(raw) >= 40, f"partial {path.name}: {len(raw)} bytes"
    version, digest, body = int.from_bytes(raw[:8], "big"), raw[8:40], raw[40:]
    assert hashlib.sha256(body).digest() == digest, f"partial or mixed {path.name} (version {version})"
    return version


def _check_json(path: Path) -> int | None:
    if not path.exists():
        return None
    obj = json.loads(path.read_text())  # a partial file fails here
    assert len(bytes.fromhex(obj["data"])) == obj["n"]
    return obj["version"]


def test_sigkill_during_writes_never_leaves_a_partial_artifact(tmp_path):
    rng = random.Random(1234)
    versions = {"blob": -1, "json": -1}
    kills_with_temp_left = 0
    start = 0
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(start)], env=ENV)
        deadline = time.time() + 60
        while not (tmp_path / "big.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "writer died on its own"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        b, j = _check_blob(tmp_path / "blob.bin"), _check_json(tmp_path / "big.json")
        assert b is not None and j is not None
        assert b >= versions["blob"] and j >= versions["json"]  # never an older version than seen before
        versions = {"blob": b, "json": j}
        temps = [p for p in tmp_path.iterdir() if ".tmp" in p.name]
        kills_with_temp_left += bool(temps)
        assert all(p.name.startswith(".") for p in temps)  # hidden: no loader lists them
        start = max(b, j) + 1
    assert kills_with_temp_left > 0, "no kill landed mid-write: the test proved nothing"


def test_leftover_temp_files_are_never_read_as_artifacts(tmp_path):
    """A temp file left by a kill (``.metrics.xxxx.tmp.json``) is invisible to readers of the real name."""
    rundir.write_json(tmp_path / rundir.METRICS, {"ok": 1})
    (tmp_path / ".metrics.abcd1234.tmp.json").write_text('{"ok": 2, "trunc')
    assert rundir.read_json(tmp_path / rundir.METRICS) == {"ok": 1}
    with rundir.atomic_path(tmp_path / rundir.METRICS) as tmp:
        assert tmp.name.startswith(".metrics.") and ".tmp" in tmp.name
        tmp.write_text('{"ok": 3}')
    assert rundir.read_json(tmp_path / rundir.METRICS) == {"ok": 3}


def test_zoo_add_ignores_leftover_temp_files(tmp_path):
    from mcuzoo import zoo

    run = tmp_path / "run"
    run.mkdir()
    rundir.write_text(run / rundir.CONFIG, "dataset:\n  name: glyphs36\n")
    rundir.write_json(run / rundir.METRICS, {"model": "st_mnist_v1", "dataset": "glyphs36", "input_shape": [28, 28, 1],
                                             "num_classes": 36})
    rundir.write_json(run / rundir.MODEL_INFO, {})
    for name in ("MODEL_CARD.md", "model.onnx"):
        rundir.write_bytes(run / name, b"x")
    from conftest import tiny_tflite_bytes

    rundir.write_bytes(run / rundir.INT8_TFLITE, tiny_tflite_bytes())  # zoo add publishes whole .tflite files only
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(run / rundir.FLOAT_MODEL)
    (run / ".model.abcd1234.tmp.onnx").write_bytes(b"half a model")
    dest = zoo.add(run, tmp_path / "zoo")
    assert (dest / "model.onnx").is_file()
    assert not [p.name for p in dest.iterdir() if ".tmp" in p.name]
    # a float model that does not load is a one-line error, and no partial file is left
    rundir.write_bytes(run / rundir.FLOAT_MODEL, b"not a zip")
    with pytest.raises(ModelFileError, match="cannot load Keras model"):
        zoo.add(run, tmp_path / "zoo2")
    assert not [p.name for p in (tmp_path / "zoo2").rglob("*") if ".tmp" in p.name]


# ---------------------------------------------------------------------------
# 2. one writer per run directory

HOLDER = r"""
import sys, time
from mcuzoo import rundir
from mcuzoo.errors import RunDirError
d, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    pass
try:
    lock = rundir.RunLock(d).acquire()
except RunDirError as e:
    print("refused:", e, flush=True)
    sys.exit(3)
print("won", flush=True)
time.sleep(1.5)
lock.release()
"""


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale_lock"])
def test_run_lock_has_exactly_one_winner_among_racing_processes(tmp_path, stale):
    """6 processes try to lock the same run directory at the same instant (free, or holding the stale
    lock of a dead process): exactly one wins, every other one is refused with the holder's pid."""
    for trial in range(3):
        d = tmp_path / f"r{trial}"
        d.mkdir()
        if stale:
            dead = subprocess.Popen([sys.executable, "-c", "pass"])
            dead.wait()
            (d / rundir.LOCK_NAME).write_text(str(dead.pid))
        start = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(d), str(start)], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(6)]
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert sum(o == "won" for o in outs) == 1, outs
        assert all(o == "won" or ("refused:" in o and "in use by another mcuzoo process" in o) for o in outs), outs
        assert not (d / rundir.LOCK_NAME).exists()  # the winner released it


def test_lock_on_a_missing_folder_is_a_run_dir_error(tmp_path):
    from mcuzoo.errors import RunDirError

    with pytest.raises(RunDirError, match="cannot lock"):
        rundir.RunLock(tmp_path / "nope").acquire()


def test_two_concurrent_resumes_of_one_run_directory(tmp_path):
    """``mcuzoo run --resume RUN_DIR`` twice at once: one of them locks the directory and trains, the
    other is refused with one line naming the holder's pid and exit code 1."""
    from mcuzoo.config import config_to_yaml, load_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config(None, ["name=run", f"output_dir={tmp_path}", "dataset.samples_per_class=8",
                             "training.epochs=100000", "training.batch_size=64", "stages=[train]",
                             "training.verbose=false", "training.early_stopping.patience=100000"])
    rundir.write_text(run_dir / rundir.CONFIG, config_to_yaml(cfg))
    cmd = [sys.executable, "-m", "mcuzoo", "run", "--resume", str(run_dir)]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.time() + 300
        while all(p.poll() is None for p in procs):
            assert time.time() < deadline, "neither run ended: no refusal"
            time.sleep(0.1)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        out, err = loser.communicate()
        assert loser.returncode == 1, out + err
        line = one_line_error(err)
        assert f"run directory {run_dir} is in use by another mcuzoo process (pid {winner.pid})" in line
        assert winner.poll() is None  # the holder goes on undisturbed
        assert (run_dir / rundir.LOCK_NAME).read_text().split()[0] == str(winner.pid)
    finally:
        for p in procs:
            p.kill()
            p.communicate()


# ---------------------------------------------------------------------------
# 4. resource bounds


def png_bytes(width: int, height: int, color_type: int = 0, rows: bytes | None = None) -> bytes:
    """A PNG declaring width x height (8-bit grey by default) whose IDAT is zlib of all-zero rows:
    a decompression bomb of a few KB for 50000 x 50000."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    channels = {0: 1, 2: 3, 6: 4}[color_type]
    if rows is None:
        comp = zlib.compressobj(9)
        row = b"\x00" * (1 + width * channels)
        parts = [comp.compress(row) for _ in range(min(height, 64))]  # enough for the header checks
        rows = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_png_bomb_is_a_one_line_error_in_predict_and_in_the_folder_loader(tmp_path, capsys):
    from mcuzoo.data import load_eval_split
    from mcuzoo.predict import load_image

    bomb = tmp_path / "data" / "a" / "bomb.png"
    bomb.parent.mkdir(parents=True)
    bomb.write_bytes(png_bytes(50000, 50000))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(DataError, match="too large") as e:
        load_image(bomb, (28, 28, 1))
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="too large"):
        load_eval_split(str(tmp_path / "data"), (28, 28, 1))


@contextlib.contextmanager
def _no_decoding():
    """Pillow decoding pixels inside fails the test (both checks read images with Pillow)."""
    from unittest import mock

    from PIL import ImageFile

    def decoded(*args, **kwargs):
        raise AssertionError("the image was decoded")

    with mock.patch.object(ImageFile.ImageFile, "load", decoded):
        yield


def test_image_just_over_pillows_pixel_limit_is_refused_by_predict(tmp_path):
    """Between MAX_IMAGE_PIXELS and twice that, Pillow only warns; predict refuses it before decoding."""
    from PIL import Image

    from mcuzoo.predict import load_image

    side = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5) + 1
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(side, side))
    with _no_decoding(), pytest.raises(DataError, match="too large"):
        load_image(big, (28, 28, 1))  # refused from the header, nothing decoded


def test_folder_loader_refuses_images_over_the_pixel_limit_from_the_header(tmp_path):
    """Between 1x and 2x Image.MAX_IMAGE_PIXELS (89M-179M pixels) Pillow only warns: the folder loader
    must refuse such a file from its header, not hand it to TF's decoder (~0.5 GB of uint8 and ~2 GB
    of float32 per image, times the tf.data parallelism)."""
    from PIL import Image

    from mcuzoo.data.images import inspect_file

    side = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5) + 1
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(side, side))
    with _no_decoding():
        info = inspect_file(str(big))
    assert info.error is not None and "too large" in info.error


def test_many_tiny_files_and_junk_load_with_bounded_work(tmp_path):
    """A folder of 3 x 1500 one-pixel images plus empty and junk files: indexed once, all usable ones kept."""
    from PIL import Image

    from mcuzoo.data import load_eval_split

    root = tmp_path / "many"
    buf = __import__("io").BytesIO()
    Image.new("L", (1, 1), 128).save(buf, format="PNG")
    tiny = buf.getvalue()
    for c in "abc":
        (root / c).mkdir(parents=True)
        for i in range(1500):
            (root / c / f"{i:05d}.png").write_bytes(tiny)
        (root / c / "empty.png").write_bytes(b"")
        (root / c / "junk.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 10)
    with pytest.raises(DataError, match="bad image file"):
        load_eval_split(str(root), (8, 8, 1))
    t0 = time.perf_counter()
    split, names = load_eval_split(str(root), (8, 8, 1), skip_bad_files=True)
    assert names == ["a", "b", "c"] and len(split) == 4500
    x, _ = next(split.numpy_batches(512))
    assert x.shape == (512, 8, 8, 1) and int(x[0, 0, 0, 0]) == 128
    assert time.perf_counter() - t0 < 60


def _patch_tflite_input_dims(data: bytes, old: list[int], new: list[int]) -> bytes:
    """Replace every int32 vector [len, *old] (the input's shape and shape signature) by [len, *new]."""
    pat = struct.pack(f"<{len(old) + 1}i", len(old), *old)
    rep = struct.pack(f"<{len(new) + 1}i", len(new), *new)
    assert pat in data
    return data.replace(pat, rep)


HUGE_CHECK = """
import sys
from mcuzoo.analysis import analyze
from mcuzoo.cli import main
from mcuzoo.errors import McuzooError
path = sys.argv[1]
try:
    a = analyze(path, host_runs=1)
    print("analyzed: input bytes", a.input_bytes, "host latency", a.host_latency_ms)
except McuzooError as e:
    print("analyze refused:", e)
code = main(["evaluate", path, "glyphs36", "--rescale", "0.0078", "--offset", "-1"])
print("evaluate exit", code)
code = main(["predict", path, sys.argv[2], "--rescale", "0.0078", "--offset", "-1"])
print("predict exit", code)
"""


def _huge_model_outcome(path: Path, tmp_path: Path) -> str:
    """analyze, evaluate and predict of a model declaring an absurd input, in a child process."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "img.png")
    res = _run_isolated(HUGE_CHECK, str(path), str(tmp_path / "img.png"))
    out = res.stdout
    assert res.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "internal error" not in out, out[-3000:]
    for verb in ("evaluate", "predict"):
        assert f"{verb} exit 1" in out, out[-3000:]
    assert out.count("mcuzoo: error:") == 2 and out.count("too large") >= 2, out[-3000:]
    return out


def test_tflite_declaring_a_2_40_element_tensor_is_refused_or_bounded(tmp_path):
    """The input of a small .tflite patched to (1, 2^20, 2^20, 3): analyze reports it (nothing is
    allocated, the host latency is not measured), evaluate and predict refuse it with one line."""
    tfl = _tiny_tflite(tmp_path)
    data = tfl.read_bytes()
    for dims in ([1, 8, 8, 3], [-1, 8, 8, 3]):
        if struct.pack("<5i", 4, *dims) in data:
            data = _patch_tflite_input_dims(data, dims, [dims[0], 1 << 20, 1 << 20, 3])
    huge = tmp_path / "huge.tflite"
    huge.write_bytes(data)
    out = _huge_model_outcome(huge, tmp_path)
    assert "analyzed: input bytes 13194139533312 host latency None" in out or "analyze refused" in out, out


def test_onnx_declaring_a_2_40_element_tensor_is_refused_or_bounded(tmp_path):
    import onnx

    m = onnx.load(str(_tiny_onnx(tmp_path)))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = 1 << 20
    onnx.save(m, tmp_path / "huge.onnx")
    out = _huge_model_outcome(tmp_path / "huge.onnx", tmp_path)
    assert "analyzed: input bytes" in out or "analyze refused" in out, out


def _run_isolated(source: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``source`` in a child process (a crash or an allocation bomb cannot take pytest down)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source), *args], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def test_keras_zip_bomb_is_refused_before_keras_reads_it(keras_base, tmp_path):
    """A config.json of 100 MB of spaces (100 KB compressed): refused from the zip directory, nothing inflated."""
    from mcuzoo.models import load_keras_model

    files, cfg = keras_base
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            if name != "config.json":
                z.writestr(name, data)
        with z.open("config.json", "w") as f:
            f.write(json.dumps(cfg).encode())
            block = b" " * (1 << 20)
            for _ in range(100):
                f.write(block)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ModelFileError, match="too large"):
        load_keras_model(path)
