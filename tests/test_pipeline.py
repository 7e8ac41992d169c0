"""The whole path on a tiny run: config -> train -> int8 .tflite -> metrics, and evaluate."""
import json

import numpy as np
import pytest
import yaml

from mcuzoo import rundir
from mcuzoo.cli import main
from mcuzoo.config import load_config
from mcuzoo.pipeline import run

TINY = [
    "name=tiny", "dataset.samples_per_class=12", "training.epochs=2", "training.batch_size=32",
    "quantization.calibration_samples=16", "training.verbose=false", "stages=[train,quantize,evaluate,analyze,card]",
    "quantization.onnx=true", "evaluation.emnist_framing=true",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, TINY + [f"output_dir={out}"])
    return run(cfg)


def interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def test_run_dir_has_every_artifact(tiny_run):
    for name in (rundir.CONFIG, rundir.MODEL_INFO, rundir.FLOAT_MODEL, rundir.INT8_TFLITE,
                 rundir.TRAINING_LOG, rundir.HISTORY, rundir.METRICS, rundir.ANALYSIS, "memory_timeline.png",
                 "MODEL_CARD.md", "confusion_float.png", "confusion_int8.png", "training_curves.png"):
        assert (tiny_run / name).is_file(), name
    assert not (tiny_run / rundir.LOCK_NAME).exists()
    assert not [p for p in tiny_run.iterdir() if ".tmp" in p.name]
    # the resolved config reloads to the same settings
    cfg = load_config(tiny_run / rundir.CONFIG)
    assert cfg.training.epochs == 2 and cfg.dataset.samples_per_class == 12


def test_int8_tflite_is_uint8_in_float32_out(tiny_run):
    it = interpreter(tiny_run / rundir.INT8_TFLITE)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and tuple(inp["shape"]) == (1, 28, 28, 1)
    assert out["dtype"] == np.float32 and tuple(out["shape"]) == (1, 36)
    # the uint8 input is the raw pixel: its quantization is the preprocessing (pixel / 127.5 - 1)
    scale, zp = inp["quantization"]
    assert scale == pytest.approx(1 / 127.5, rel=1e-3)
    assert zp in (127, 128)
    # weights are int8 and per-channel by default: a conv has one scale per output channel
    convs = [t for t in it.get_tensor_details() if t["dtype"] == np.int8 and len(t["shape"]) == 4
             and len(t["quantization_parameters"]["scales"]) > 1]
    assert convs, "no per-channel int8 conv weights found"


def test_metrics_hold_float_and_int8(tiny_run):
    m = json.loads((tiny_run / rundir.METRICS).read_text())
    assert m["evaluation_split"] == "test"
    for key in ("float", "int8"):
        assert 0.0 <= m[key]["top1"] <= 1.0
        assert m[key]["n"] > 0
        assert len(m[key]["per_class"]) == 36
        conf = np.array(m[key]["confusion"])
        assert conf.shape == (36, 36) and conf.sum() == m[key]["n"]
        assert np.trace(conf) / conf.sum() == pytest.approx(m[key]["top1"], abs=1e-6)
    # evaluation.emnist_framing: each model scored again on the same test glyphs framed as EMNIST
    from mcuzoo.data.loading import load_run_dataset
    from mcuzoo.evaluate import _emnist_framed
    from mcuzoo.models.scoring import evaluate_model
    from mcuzoo.rundir import input_scaling, read_model_info

    cfg = load_config(tiny_run / rundir.CONFIG)
    ds = load_run_dataset(cfg)
    framed = _emnist_framed(ds.test, cfg)
    assert not np.array_equal(framed.images, ds.test.images)
    for key, name in (("float", rundir.FLOAT_MODEL), ("int8", rundir.INT8_TFLITE)):
        rescale, offset = input_scaling(read_model_info(tiny_run / name), cfg)
        res = evaluate_model(tiny_run / name, framed, list(ds.class_names), rescale, offset)
        assert res.n == m[key]["n"]
        assert m[key]["top1_emnist_framing"] == pytest.approx(res.top1, abs=1e-6), key
    card = (tiny_run / "MODEL_CARD.md").read_text()
    assert "Top 1 (%), EMNIST framing" in card and "reads glyphs as they are stored" in card
    assert m["int8"]["backend"] == "litert" and m["float"]["backend"] == "keras"


def test_float_model_reloads_in_safe_mode(tiny_run):
    import keras

    import mcuzoo.models  # noqa: F401  registers custom layers

    model = keras.saving.load_model(tiny_run / rundir.FLOAT_MODEL, safe_mode=True)
    assert model.output_shape == (None, 36)


def test_cli_evaluate_json_matches_metrics(tiny_run, capsys):
    m = json.loads((tiny_run / rundir.METRICS).read_text())
    for key, name in (("int8", rundir.INT8_TFLITE), ("float", rundir.FLOAT_MODEL)):
        code = main(["evaluate", str(tiny_run / name), str(tiny_run / rundir.CONFIG), "--json"])
        assert code == 0
        got = json.loads(capsys.readouterr().out)
        assert got["n"] == m[key]["n"]
        assert got["top1"] == pytest.approx(m[key]["top1"], abs=1e-6)


def test_per_tensor_quantization(tiny_run, tmp_path):
    from mcuzoo.data import load_dataset
    from mcuzoo.quantization.calibration import draw_calibration
    from mcuzoo.quantization.tflite import quantize_tflite

    cfg = load_config(tiny_run / rundir.CONFIG)
    ds = load_dataset(cfg.dataset, (28, 28, 1))
    q = quantize_tflite(tiny_run / rundir.FLOAT_MODEL, draw_calibration(cfg, ds, 8), tmp_path / "pt.tflite",
                        per_channel=False)
    it = interpreter(q.path)
    int8_weights = [t for t in it.get_tensor_details() if t["dtype"] == np.int8 and len(t["shape"]) == 4
                    and t["shape"][0] > 1 and t["quantization_parameters"]["scales"].size]
    assert int8_weights
    assert all(len(t["quantization_parameters"]["scales"]) == 1 for t in int8_weights)


def test_cli_evaluate_builtin_by_name(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run / rundir.INT8_TFLITE), "glyphs36", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n"] == 36 * 60 and len(got["per_class"]) == 36 and 0 <= got["top1"] <= 1


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert main(["evaluate", str(bad), "glyphs36"]) == 1
    assert main(["evaluate", str(tmp_path / "missing.keras"), "glyphs36"]) == 1
    assert main(["evaluate", str(tmp_path / "model.pt"), "glyphs36"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("mcuzoo: error: ") for line in err)


def test_run_refuses_unknown_model_before_writing(tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"output_dir: {tmp_path / 'runs'}\nmodel: {{name: resnet}}\n")
    code = main(["run", str(cfg_path)])
    assert code == 2
    assert "unknown model 'resnet'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_analysis_json_of_the_run(tiny_run):
    a = json.loads((tiny_run / rundir.ANALYSIS).read_text())
    import keras

    import mcuzoo.models  # noqa: F401

    from mcuzoo.models import total_macs

    model = keras.saving.load_model(tiny_run / rundir.FLOAT_MODEL, safe_mode=True)
    assert a["macs"] == total_macs(model)
    for key in ("macs", "weights_bytes", "activation_bytes", "activation_lower_bound_bytes"):
        assert a[key] > 0
    assert a["activation_bytes"] >= a["activation_lower_bound_bytes"]
    assert a["io_in_arena"] is True
    assert "STM32H747" in " ".join(a["fits_on"])
    from mcuzoo.analysis.tflm import tflm_arena_bytes

    assert a["runtime"] == "tflm" and a["tflm_arena_bytes"] == tflm_arena_bytes(tiny_run / rundir.INT8_TFLITE)
    assert a["boards"]["STM32H747"]["ram_needed_bytes"] == a["tflm_arena_bytes"]


def test_zoo_add_and_index(tiny_run, tmp_path):
    from mcuzoo import zoo

    dest = zoo.add(tiny_run, tmp_path / "zoo")
    assert dest == tmp_path / "zoo" / "st_mnist_v1" / "glyphs36_28"
    for name in zoo.REQUIRED:
        assert (dest / name).is_file()
    # the zoo's config and card name no folder of the machine that made the run
    assert str(tiny_run.parent) in (tiny_run / "MODEL_CARD.md").read_text()
    assert yaml.safe_load((dest / rundir.CONFIG).read_text())["output_dir"] == "runs"
    assert str(tiny_run.parent) not in (dest / "MODEL_CARD.md").read_text()
    assert "new run directory under `runs`" in (dest / "MODEL_CARD.md").read_text()
    ran, published = (json.loads((d / rundir.ANALYSIS).read_text()) for d in (tiny_run, dest))
    assert str(tiny_run) in ran["model"] and published["model"] == rundir.INT8_TFLITE
    assert str(tiny_run.parent) not in (dest / rundir.ANALYSIS).read_text()
    m = json.loads((tiny_run / rundir.METRICS).read_text())
    table = (tmp_path / "zoo" / "README.md").read_text()
    row = [ln for ln in table.splitlines() if ln.startswith("| [st_mnist_v1]")]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    header = [c.strip() for c in next(ln for ln in table.splitlines() if ln.startswith("| model")).strip("|").split("|")]
    assert len(cells) == len(header)
    col = dict(zip(header, cells))
    assert col["float top-1"] == f"{100 * m['float']['top1']:.2f} %"
    assert col["int8 top-1 (MCU-exact)"] == f"{100 * m['int8']['top1']:.2f} %"
    assert col["QDQ int8 top-1"] == f"{100 * m['onnx_qdq']['top1']:.2f} %"
    assert col["mixed w4/w8 top-1"] == "-"  # the tiny run searched no mixed model
    a = json.loads((tiny_run / rundir.ANALYSIS).read_text())
    assert col["TFLM arena"] == f"{a['tflm_arena_bytes'] / 1024:.2f} KiB" != col["activation RAM"]
    with pytest.raises(Exception, match="not a finished run"):
        zoo.add(tmp_path, tmp_path / "zoo")
    # the maintainers' notes after the marker survive a rewrite; the table above it is regenerated
    readme = tmp_path / "zoo" / "README.md"
    notes = f"{zoo.NOTES_MARKER}\n\n## Goals\n\n| model | goal |\n| --- | --- |\n| x | met |\n"
    readme.write_text(table.replace("| [st_mnist_v1]", "| [stale]") + "\n" + notes)
    zoo.index(tmp_path / "zoo")
    again = readme.read_text()
    assert again.endswith(notes) and again.count(zoo.NOTES_MARKER) == 1
    assert "| [stale]" not in again and again[: again.index(zoo.NOTES_MARKER)].rstrip("\n") == table.rstrip("\n")


def test_zoo_add_publishes_the_runs_notes_without_the_machines_paths(tiny_run, tmp_path):
    import shutil

    from mcuzoo import zoo

    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    m = json.loads((run_dir / rundir.METRICS).read_text())
    m["notes"] = ["Food-101 /work/shared/data/food-101-10: 10 classes", "folder ../shared/data/flowers: 5 classes"]
    rundir.write_json(run_dir / rundir.METRICS, m)
    dest = zoo.add(run_dir, tmp_path / "zoo")
    published = json.loads((dest / rundir.METRICS).read_text())
    assert published["notes"] == ["Food-101 food-101-10: 10 classes", "folder ../shared/data/flowers: 5 classes"]
    assert {k: v for k, v in published.items() if k != "notes"} == {k: v for k, v in m.items() if k != "notes"}
    assert json.loads((run_dir / rundir.METRICS).read_text())["notes"] == m["notes"]  # the run keeps its own


def _h5_groups(keras_file) -> list[str]:
    """Top-level groups of the weights file inside a .keras archive (an "optimizer" group holds Adam's moments)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(keras_file) as z:
        data = z.read("model.weights.h5")
    with h5py.File(io.BytesIO(data), "r") as f:
        return list(f.keys())


def test_float_model_holds_no_optimizer_and_zoo_add_strips_one(tiny_run, tmp_path):
    import shutil

    import keras

    from mcuzoo import zoo
    from mcuzoo.models import load_keras_model

    assert "optimizer" not in _h5_groups(tiny_run / rundir.FLOAT_MODEL)
    assert "optimizer" in _h5_groups(next((tiny_run / "checkpoints").glob("epoch_*.keras")))  # resume needs it
    # a run of an older mcuzoo kept the optimizer in float_model.keras: the zoo copy drops it
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model = load_keras_model(run / rundir.FLOAT_MODEL)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    x = np.zeros((2, *model.input_shape[1:]), np.float32)
    model.fit(x, np.zeros(2, np.int64), verbose=0)
    model.save(run / rundir.FLOAT_MODEL)
    assert "optimizer" in _h5_groups(run / rundir.FLOAT_MODEL)
    # and a stale mixed model from an earlier search is not left beside the new one
    dest0 = tmp_path / "zoo" / "st_mnist_v1" / "glyphs36_28"
    dest0.mkdir(parents=True)
    (dest0 / "model_qdq_w4_50.0%_w8_50.0%_a8_100%.onnx").write_bytes(b"old")
    dest = zoo.add(run, tmp_path / "zoo")
    assert dest == dest0 and not list(dest.glob("*_w4_50.0%*"))
    assert "optimizer" not in _h5_groups(dest / rundir.FLOAT_MODEL)
    assert (dest / rundir.FLOAT_MODEL).stat().st_size < (run / rundir.FLOAT_MODEL).stat().st_size
    copy = load_keras_model(dest / rundir.FLOAT_MODEL)
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_zoo_add_keeps_an_onnx_model_that_computes_the_same(tiny_run, tmp_path):
    """Re-exporting the same float model gives other bytes (tf2onnx's counters), not another model: the zoo keeps
    its file, so git sees no change. A model that computes something else replaces it."""
    import shutil

    from mcuzoo import zoo
    from mcuzoo.quantization.onnx_qdq import export_float_onnx
    from mcuzoo.models import load_keras_model

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    dest = zoo.add(run, tmp_path / "zoo")
    published = (dest / "model_float.onnx").read_bytes()
    export_float_onnx(load_keras_model(run / rundir.FLOAT_MODEL), run / "model_float.onnx")
    export_float_onnx(load_keras_model(run / rundir.FLOAT_MODEL), run / "model_float.onnx")  # counters moved on
    assert (run / "model_float.onnx").read_bytes() != published
    zoo.add(run, tmp_path / "zoo")
    assert (dest / "model_float.onnx").read_bytes() == published
    model = load_keras_model(run / rundir.FLOAT_MODEL)
    model.set_weights([w * 1.01 for w in model.get_weights()])
    export_float_onnx(model, run / "model_float.onnx")
    zoo.add(run, tmp_path / "zoo")
    assert (dest / "model_float.onnx").read_bytes() == (run / "model_float.onnx").read_bytes()
    (dest / "model_qdq_int8.onnx").write_bytes(b"not onnx")  # an unreadable zoo file is replaced
    zoo.add(run, tmp_path / "zoo")
    assert (dest / "model_qdq_int8.onnx").read_bytes() == (run / "model_qdq_int8.onnx").read_bytes()


def test_onnx_qdq_in_the_run(tiny_run):
    m = json.loads((tiny_run / rundir.METRICS).read_text())
    assert m["onnx_qdq"]["file"] == "model_qdq_int8.onnx"
    assert (tiny_run / "model_qdq_int8.onnx").is_file() and (tiny_run / "model_float.onnx").is_file()
    assert 0.0 <= m["onnx_qdq"]["top1"] <= 1.0
    assert m["onnx_qdq"]["n"] == m["float"]["n"]  # scored on the same evaluation split
    card = (tiny_run / "MODEL_CARD.md").read_text()
    row = next(ln for ln in card.splitlines() if "Int8 (ONNX QDQ)" in ln)
    assert f"{100 * m['onnx_qdq']['top1']:.2f}" in row and f"{m['evaluation_split']}, {m['float']['n']:,} images" in row
    # each figure names the runtime that measured it, with its version (int8 ONNX results vary between them)
    from importlib.metadata import version

    assert m["onnx_qdq"]["runtime"] == f"onnxruntime {version('onnxruntime')}"
    assert m["int8"]["runtime"] == f"ai-edge-litert {version('ai-edge-litert')}"
    assert m["float"]["runtime"] == f"keras {version('keras')}"
    assert m["int8"]["kernels"] == "exact"  # the default: TFLM's reference kernels
    assert (f"Measured with keras {version('keras')} (Float), ai-edge-litert {version('ai-edge-litert')} "
            f"(.tflite, MCU-exact (TFLM reference kernels)), onnxruntime {version('onnxruntime')} (ONNX).") in card


def test_evaluate_onnx_with_fixed_batch(tiny_run, tmp_path):
    """An ONNX model exported with batch 1 is fed in chunks, with the same result."""
    import onnx

    from mcuzoo.data import load_dataset
    from mcuzoo.evaluate import evaluate_model

    cfg = load_config(tiny_run / rundir.CONFIG)
    split = load_dataset(cfg.dataset, (28, 28, 1)).test
    model = onnx.load(tiny_run / "model_float.onnx")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, fixed)
    names = [str(i) for i in range(36)]
    a = evaluate_model(tiny_run / "model_float.onnx", split, names, cfg.preprocessing.rescale, cfg.preprocessing.offset, 64)
    b = evaluate_model(fixed, split, names, cfg.preprocessing.rescale, cfg.preprocessing.offset, 64)
    assert a.n == b.n and a.top1 == pytest.approx(b.top1, abs=1e-9)
