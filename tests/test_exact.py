"""MCU-exact int8 figures: the default .tflite path computes what TensorFlow Lite Micro computes, bit for bit.

The reference is TFLM's own interpreter (the ``tflite-micro`` package, reference kernels, one image per
invoke); the exact path is :mod:`mcuzoo.runtime` (LiteRT's reference kernels, batched). Also: XNNPACK is an
explicit option whose figures say so, and a model that XNNPACK cannot prepare falls back to the built-in kernels.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, shared_dataset

ZOO_MODELS = sorted(REPO.glob("zoo/*/*/model_int8.tflite"))
ARENA = 4 << 20  # enough for every zoo model (SqueezeNet 128 needs about 0.5 MiB)


def tflm_outputs(model: Path | bytes, x: np.ndarray) -> np.ndarray:
    """The first output of TFLM's interpreter for each image of ``x``, one invoke per image."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    it = (tflm.Interpreter.from_bytes(model, arena_size=ARENA) if isinstance(model, bytes)
          else tflm.Interpreter.from_file(str(model), arena_size=ARENA))
    out = []
    for img in x:
        it.set_input(img[None], 0)
        it.invoke()
        out.append(it.get_output(0).copy())
    return np.concatenate(out)


def exact_outputs(path: Path, x: np.ndarray, runtime: str = "exact", workers: int = 1) -> np.ndarray:
    from mcuzoo.runtime import open_tflite

    runner = open_tflite(path.read_bytes(), path, runtime, workers)
    try:
        return runner.run(x)
    finally:
        runner.close()


def _real_images(model_dir: Path, shape, n: int) -> np.ndarray:
    """``n`` images of the dataset the zoo model was trained on, as its input (uint8, resized as in training);
    skips where ../shared/data lacks that dataset."""
    import yaml

    from mcuzoo.predict import load_image

    ds = yaml.safe_load((model_dir / "config.yaml").read_text())["dataset"]
    root = shared_dataset(Path(ds["path"]).name)
    if ds["name"] == "emnist_byclass":
        from mcuzoo.data.emnist import find_pair, load_pair

        pair = find_pair(root, "train")
        images, _ = load_pair(*pair)
        step = max(1, len(images) // n)
        return images[::step][:n].reshape(-1, *shape).astype(np.uint8)
    files = sorted(p for p in root.rglob("*.jpg"))
    step = max(1, len(files) // n)
    return np.stack([load_image(f, shape, "bilinear") for f in files[::step][:n]])


@pytest.mark.parametrize("model", ZOO_MODELS, ids=[p.parent.relative_to(REPO / "zoo").as_posix() for p in ZOO_MODELS])
def test_zoo_model_is_bit_identical_to_tflm_on_real_images(model):
    from mcuzoo.runtime import open_tflite

    shape = tuple(int(d) for d in open_tflite(model.read_bytes(), model).inputs[0]["shape"][1:])
    x = _real_images(model.parent, shape, 24)
    want = tflm_outputs(model, x)
    got = exact_outputs(model, x)  # one batch of 24: the batched path is per-image exact too
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def test_the_engine_is_litert_reference_kernels_only_where_they_are_tflms():
    """SqueezeNet (no FULLY_CONNECTED) runs batched on LiteRT's reference kernels; a model with per-channel
    FULLY_CONNECTED (ST MNIST, EfficientNet LC), where LiteRT's reference kernel rounds once and TFLM twice,
    runs on TFLM's interpreter."""
    from mcuzoo.runtime import REF_EXACT_OPS, open_tflite, ref_is_exact

    assert "FULLY_CONNECTED" not in REF_EXACT_OPS
    assert ref_is_exact({"CONV_2D", "MEAN", "SOFTMAX"}) and not ref_is_exact({"CONV_2D", "FULLY_CONNECTED"})
    for model in ZOO_MODELS:
        runner = open_tflite(model.read_bytes(), model)
        ops = {op["op_name"] for op in runner._interp._get_ops_details()}
        assert runner.kernels == "exact"
        assert runner.engine == ("tflm" if "FULLY_CONNECTED" in ops else "litert-ref"), model


def _tiny_family_model(tmp_path: Path, family: str, shape, classes: int = 5) -> Path:
    """An untrained mcuzoo model of ``family``, quantized to int8 on built-in images."""
    import keras

    from mcuzoo.data import builtin
    from mcuzoo.models import build_model
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.tflite import quantize_tflite

    keras.utils.set_random_seed(0)
    model = build_model(family, shape, classes)
    images, _ = builtin.generate("shapes", 6, shape, seed=0, stream=0)
    path = tmp_path / f"{family}.tflite"
    quantize_tflite(model, Calibration(images[:24], 1 / 127.5, -1.0), path)
    return path


FAMILIES = [("st_mnist_v1", (28, 28, 1)), ("st_efficientnet_lc_v1", (64, 64, 3)), ("squeezenet_v1_0", (48, 48, 3))]


@pytest.mark.parametrize("family,shape", FAMILIES, ids=[f for f, _ in FAMILIES])
def test_each_model_family_is_bit_identical_to_tflm(tmp_path, family, shape):
    """Without ../shared: every operator each family produces (EfficientNet LC's squeeze-excite MEANs with
    keep_dims, which LiteRT's optimised kernels round differently; ST MNIST's FULLY_CONNECTED, ...)."""
    from mcuzoo.data import builtin

    path = _tiny_family_model(tmp_path, family, shape)
    x, _ = builtin.generate("shapes", 4, shape, seed=1, stream=1)
    x = np.concatenate([x[:12], np.random.default_rng(0).integers(0, 256, (4, *shape)).astype(np.uint8)])
    assert np.array_equal(exact_outputs(path, x), tflm_outputs(path, x))


def test_parallel_workers_give_the_same_outputs(tmp_path):
    from mcuzoo.data import builtin

    path = _tiny_family_model(tmp_path, "st_mnist_v1", (28, 28, 1))
    x, _ = builtin.generate("glyphs36", 1, (28, 28, 1), seed=2, stream=1)
    assert np.array_equal(exact_outputs(path, x, workers=2), tflm_outputs(path, x))


def _xnnpack_refuses(tmp_path: Path) -> Path:
    """A valid int8 model that XNNPACK cannot prepare: a convolution whose output scale is a millionth of the
    calibrated one (requantization scale far above what XNNPACK accepts). LiteRT's built-in kernels and TFLM
    run it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    src = _tiny_family_model(tmp_path, "st_mnist_v1", (28, 28, 1))
    model = schema.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    g = model.subgraphs[0]
    conv = next(op for op in g.operators
                if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D)
    q = g.tensors[conv.outputs[0]].quantization
    q.scale = [s * 1e-6 for s in q.scale]
    b = flatbuffers.Builder(1 << 16)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    path = tmp_path / "xnnpack_refuses.tflite"
    path.write_bytes(bytes(b.Output()))
    return path


def test_xnnpack_failing_to_prepare_falls_back_to_builtin_kernels(tmp_path, capfd):
    from ai_edge_litert.interpreter import Interpreter

    from mcuzoo.data import builtin
    from mcuzoo.evaluate import kernels_of, open_model

    path = _xnnpack_refuses(tmp_path)
    it = Interpreter(model_path=str(path))  # the failure is real: LiteRT's default path raises
    with pytest.raises(RuntimeError, match="XNNPACK"):
        it.allocate_tensors()
        it.invoke()
    x, _ = builtin.generate("glyphs36", 1, (28, 28, 1), seed=3, stream=1)
    capfd.readouterr()
    _, _, predict = open_model(path, 1 / 127.5, -1.0, runtime="xnnpack")
    y = predict(x[:8])
    err = capfd.readouterr().err
    assert kernels_of(predict) == "builtin" and y.shape == (8, 5) and np.all(np.isfinite(y))
    notes = [ln for ln in err.splitlines() if "XNNPACK could not prepare" in ln]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "built-in kernels" in notes[0]
    # the default, exact path needs no fallback and is TFLM's result
    _, _, exact = open_model(path, 1 / 127.5, -1.0)
    assert kernels_of(exact) == "exact"
    assert np.array_equal(exact(x[:8]), tflm_outputs(path, x[:8]))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny ST MNIST int8 model with model_info.json, for the CLI."""
    from mcuzoo import rundir
    from mcuzoo.data.builtin import builtin_class_names
    from mcuzoo.evaluate import ModelInfo

    d = tmp_path_factory.mktemp("tiny")
    path = _tiny_family_model(d, "st_mnist_v1", (28, 28, 1), classes=len(builtin_class_names("glyphs36")))
    path.rename(d / rundir.INT8_TFLITE)
    info = ModelInfo(class_names=builtin_class_names("glyphs36"), input_shape=(28, 28, 1), rescale=1 / 127.5,
                     offset=-1.0)
    rundir.write_json(d / rundir.MODEL_INFO, info.to_json())
    return d


@pytest.mark.parametrize("flags,kernels", [([], "exact"), (["--fast"], "xnnpack"), (["--runtime", "xnnpack"], "xnnpack")])
def test_evaluate_cli_says_which_kernels(tiny_dir, capsys, flags, kernels):
    from mcuzoo import rundir
    from mcuzoo.cli import main
    from mcuzoo.runtime import kernels_label

    model = str(tiny_dir / rundir.INT8_TFLITE)
    assert main(["evaluate", model, "glyphs36", "--json", *flags]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kernels"] == kernels and d["kernels_label"] == kernels_label(kernels)
    assert main(["evaluate", model, "glyphs36", *flags]) == 0
    out = capsys.readouterr().out  # the result, on stdout
    assert kernels_label(kernels) in out
    assert ("not MCU-exact" in out) == (kernels == "xnnpack")


def test_predict_says_which_kernels(tiny_dir, tmp_path, capsys):
    from PIL import Image

    from mcuzoo import rundir
    from mcuzoo.cli import main

    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "a.png")
    model = str(tiny_dir / rundir.INT8_TFLITE)
    assert main(["predict", model, str(tmp_path / "a.png"), "--json", "--fast"]) == 0
    assert json.loads(capsys.readouterr().out)["kernels"] == "xnnpack"
    assert main(["predict", model, str(tmp_path / "a.png"), "--fast"]) == 0
    assert "XNNPACK (fast, not MCU-exact)" in " ".join(capsys.readouterr().out.split())  # the table's title
    assert main(["predict", model, str(tmp_path / "a.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernels"] == "exact"
    assert main(["predict", model, str(tmp_path / "a.png"), "--fast", "--runtime", "exact"]) == 1


def test_card_and_zoo_table_label_the_int8_kernels():
    from mcuzoo.card.accuracy import int8_format
    from mcuzoo.zoo import _int8_mark

    assert int8_format("exact") == "Int8, MCU-exact (TFLM reference kernels)"
    assert "not MCU-exact" in int8_format("xnnpack")
    assert _int8_mark({"top1": 0.5, "kernels": "exact"}) == ""
    assert "not MCU-exact" in _int8_mark({"top1": 0.5, "kernels": "xnnpack"})
    assert "not MCU-exact" in _int8_mark({"top1": 0.5})  # recorded before the runtime was: XNNPACK


def test_tflm_runs_in_a_child_and_a_crash_there_is_one_line(tiny_dir):
    """TFLM's interpreter runs a model in a child process: a model that crashes it (a segfault the one-shot
    probe did not see, as a fuzz case once did) ends in a ModelFileError naming the file, and mcuzoo goes on.
    The crash is forced here: the child gets SIGSEGV."""
    import signal

    from mcuzoo import rundir
    from mcuzoo.errors import ModelFileError
    from mcuzoo.runtime import _TflmChild, open_tflite

    path = tiny_dir / rundir.INT8_TFLITE
    runner = open_tflite(path.read_bytes(), path)
    assert runner.engine == "tflm" and runner.workers == 1
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    assert np.array_equal(runner.run(x), tflm_outputs(path, x))
    assert isinstance(runner._tflm, _TflmChild)  # it ran in the child, never in this process
    runner._tflm._proc.send_signal(signal.SIGSEGV)
    with pytest.raises(ModelFileError, match=f"{path.name} crashes TFLM's interpreter .*signal 11"):
        runner.run(x)
    again = open_tflite(path.read_bytes(), path)  # mcuzoo goes on
    assert np.array_equal(again.run(x[:1]), tflm_outputs(path, x[:1]))
    again.close()


def test_tflm_child_starts_from_a_script_on_stdin(tiny_dir):
    """The child is a plain ``python -c``: a user's script read from stdin (no __main__ file that
    multiprocessing's spawn could re-import) still runs the exact path."""
    import subprocess
    import sys

    from mcuzoo import rundir

    path = tiny_dir / rundir.INT8_TFLITE
    script = ("import numpy as np\nfrom mcuzoo.runtime import open_tflite\n"
              f"r = open_tflite(open({str(path)!r}, 'rb').read(), 'm.tflite')\n"
              "print(r.engine, r.run(np.zeros((2, 28, 28, 1), np.uint8)).shape)\n")
    res = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "tflm (2, 36)" in res.stdout, res.stderr[-2000:]
