"""ONNX QDQ int8, mixed int4/int8 weights and the per-layer error report, on a small trained ST MNIST."""
import argparse
import json
import re

import numpy as np
import pytest

from mcuzoo import rundir
from mcuzoo.errors import McuzooError, ModelFileError

RESCALE, OFFSET = 1 / 127.5, -1.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory as `mcuzoo run` leaves it: ST MNIST trained briefly on glyphs36 (about 45 % top-1)."""
    import keras

    from mcuzoo.config import config_to_yaml, load_config
    from mcuzoo.data import load_dataset
    from mcuzoo.evaluate import ModelInfo
    from mcuzoo.models import build_model
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.tflite import quantize_tflite

    run = tmp_path_factory.mktemp("run")
    cfg = load_config(None, ["name=q", "dataset.samples_per_class=20", "quantization.calibration_samples=64",
                             f"output_dir={run.parent}"])
    ds = load_dataset(cfg.dataset, (28, 28, 1))
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # the same fixture model whatever ran before
    keras.utils.set_random_seed(0)
    model = build_model("st_mnist_v1", (28, 28, 1), ds.num_classes)
    for layer in model.layers:  # few steps: let BatchNorm statistics follow the weights
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x, y = ds.train.to_numpy()
    model.fit(x.astype(np.float32) * RESCALE + OFFSET, y, batch_size=32, epochs=30, verbose=0)
    model.save(run / rundir.FLOAT_MODEL)
    images = ds.train.take(64, seed=0)
    calib = Calibration(images, RESCALE, OFFSET)
    quantize_tflite(model, calib, run / rundir.INT8_TFLITE)
    rundir.write_text(run / rundir.CONFIG, config_to_yaml(cfg))
    info = ModelInfo(list(ds.class_names), (28, 28, 1), RESCALE, OFFSET, "st_mnist_v1", ds.name)
    rundir.write_json(run / rundir.MODEL_INFO, info.to_json())
    return {"run": run, "ds": ds, "images": images, "calib": calib, "model": model}


@pytest.fixture(scope="module")
def qdq(trained, tmp_path_factory):
    from mcuzoo.quantization.onnx_qdq import export_qdq

    out = tmp_path_factory.mktemp("qdq")
    path = export_qdq(trained["run"] / rundir.FLOAT_MODEL, trained["calib"], out)
    return path


def _onnx(path):
    import onnx

    return onnx.load(str(path))


def _weight_scales(model):
    """Scale initializer shapes of the DequantizeLinear nodes that read int8/int4 weights (not biases)."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    shapes = []
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            if inits[n.input[0]].data_type in (TensorProto.INT8, TensorProto.INT4):
                shapes.append((list(inits[n.input[0]].dims), list(inits[n.input[1]].dims)))
    return shapes


def _predict(path, images):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = images if inp.type == "tensor(uint8)" else images.astype(np.float32) * RESCALE + OFFSET
    return sess.run(None, {inp.name: x})[0]


# ---------------------------------------------------------------------------
# QDQ int8


def test_qdq_export_is_qdq_int8_with_float_io(qdq):
    from onnx import TensorProto

    assert qdq.name == "model_qdq_int8.onnx"
    assert (qdq.parent / "model_float.onnx").is_file()
    m = _onnx(qdq)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 10
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    # weights symmetric: zero points of int8 weights are all 0
    from onnx import numpy_helper

    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == TensorProto.INT8:
            assert not np.any(numpy_helper.to_array(inits[n.input[2]]))
    assert not [p for p in qdq.parent.iterdir() if ".tmp" in p.name]


def test_qdq_top1_close_to_float(trained, qdq):
    from mcuzoo.evaluate import evaluate_model

    ds = trained["ds"]
    f = evaluate_model(trained["run"] / rundir.FLOAT_MODEL, ds.test, ds.class_names, RESCALE, OFFSET)
    q = evaluate_model(qdq, ds.test, ds.class_names, RESCALE, OFFSET)
    fo = evaluate_model(qdq.parent / "model_float.onnx", ds.test, ds.class_names, RESCALE, OFFSET)
    assert q.backend == "onnxruntime"
    assert f.top1 > 0.2, "the fixture model did not learn"
    assert fo.top1 == pytest.approx(f.top1, abs=1e-9)  # the float export is the Keras model
    assert abs(q.top1 - f.top1) <= 0.04
    x, _ = ds.test.to_numpy()
    agree = (_predict(qdq, x).argmax(1) == _predict(qdq.parent / "model_float.onnx", x).argmax(1)).mean()
    assert agree >= 0.8  # a half-trained model: many borderline predictions


def test_input_range_is_anchored_by_the_first_calibration_image(qdq):
    """Min-max calibration of the input sees exactly [offset, 255 * rescale + offset]: scale = 2/255."""
    from onnx import numpy_helper

    m = _onnx(qdq)
    inits = {i.name: i for i in m.graph.initializer}
    q_in = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)
    scale = float(numpy_helper.to_array(inits[q_in.input[1]]))
    assert scale == pytest.approx(255 * RESCALE / 255, rel=1e-4)


def test_per_channel_vs_per_tensor_scales(trained, qdq, tmp_path):
    from mcuzoo.quantization.onnx_qdq import export_qdq

    per_channel = _weight_scales(_onnx(qdq))
    assert per_channel and all(len(s) == 1 and s[0] > 1 for _, s in per_channel)
    # one scale per output channel: axis 0 of a conv weight, axis 1 of a (K, N) dense weight
    assert all(s[0] in (w[0], w[-1]) for w, s in per_channel)
    pt = export_qdq(trained["run"] / rundir.FLOAT_MODEL, trained["calib"], tmp_path,
                    per_channel=False, float_onnx=qdq.parent / "model_float.onnx")
    per_tensor = _weight_scales(_onnx(pt))
    assert len(per_tensor) == len(per_channel)
    assert all(s == [] for _, s in per_tensor)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_calibration_methods_each_give_a_working_model(trained, qdq, tmp_path, method):
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.onnx_qdq import export_qdq

    p = export_qdq(qdq.parent / "model_float.onnx", Calibration(trained["images"][:32], RESCALE, OFFSET), tmp_path,
                   calibration_method=method)
    x = trained["ds"].test.to_numpy()[0][:64]
    ref = _predict(qdq.parent / "model_float.onnx", x).argmax(1)
    assert (_predict(p, x).argmax(1) == ref).mean() >= 0.8


def test_number_of_calibration_images_matters(trained, qdq, tmp_path):
    from onnx import numpy_helper

    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.onnx_qdq import export_qdq

    def act_scales(path):
        m = _onnx(path)
        inits = {i.name: i for i in m.graph.initializer}
        return {n.input[0]: float(numpy_helper.to_array(inits[n.input[1]])) for n in m.graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] not in inits}

    one = export_qdq(qdq.parent / "model_float.onnx", Calibration(trained["images"][:1], RESCALE, OFFSET), tmp_path / "one")
    many = act_scales(qdq)  # 64 images
    few = act_scales(one)
    assert few.keys() == many.keys()
    assert any(abs(few[k] - many[k]) > 1e-6 * many[k] for k in many)
    # more images can only widen a min-max range
    assert sum(few[k] <= many[k] * (1 + 1e-5) for k in many) >= len(many) - 1


def test_uint8_input_variant(trained, qdq, tmp_path):
    from onnx import TensorProto

    from mcuzoo.evaluate import evaluate_model
    from mcuzoo.quantization.onnx_qdq import export_qdq

    p = export_qdq(qdq.parent / "model_float.onnx", trained["calib"], tmp_path, input_dtype="uint8")
    assert _onnx(p).graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    ds = trained["ds"]
    a = evaluate_model(p, ds.test, ds.class_names, RESCALE, OFFSET).top1
    b = evaluate_model(qdq, ds.test, ds.class_names, RESCALE, OFFSET).top1
    assert abs(a - b) <= 0.02


def test_weights_flash_counts_int8_bytes(qdq):
    from mcuzoo.analysis.graph import load_graph
    from mcuzoo.quantization.onnx_qdq import weights_flash

    f = weights_flash(qdq.parent / "model_float.onnx")
    q = weights_flash(qdq)
    assert f.float_params >= 9536 and q.int8_params == 9536  # ST MNIST at 36 classes: conv + dense weights
    assert q.w8_share == 100.0 and q.int4_params == 0
    assert q.total_bytes < f.total_bytes / 3
    # the definition: int8 weights one byte, int32 biases four, the int64 shape constants, no scales
    assert q.int32_params > 0 and q.config_bytes > 0 and q.float_params == q.other_params == 0
    assert q.total_bytes == q.int8_params + 4 * q.int32_params + q.config_bytes
    # one definition: the analysis counts the same bytes in the same files
    for path in (qdq, qdq.parent / "model_float.onnx"):
        assert load_graph(path).weights_bytes == weights_flash(path).total_bytes, path.name


def _tflite_numbers(data: bytes) -> list:
    """Every tensor's shape, type, quantization and constant data (not its name: names follow tracing)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    written = {int(t) for op in it._get_ops_details() for t in op["outputs"]}
    written |= {d["index"] for d in it.get_input_details()}
    out = []
    for d in it.get_tensor_details():
        q = d["quantization_parameters"]
        const = it.get_tensor(d["index"]).tobytes() if d["index"] not in written else b""
        out.append((tuple(d["shape"]), str(d["dtype"]), q["scales"].tobytes(), q["zero_points"].tobytes(), const))
    return out


def test_the_tflite_is_the_converters_on_the_anchored_calibration_images(trained, tmp_path):
    """quantize_tflite is the converter on the calibration images in their drawn order, one at a time, the first
    with a pixel at 0 and one at 255: the same model as the converter called by hand on those images."""
    import tensorflow as tf

    from mcuzoo.console import captured_output
    from mcuzoo.models import load_keras_model
    from mcuzoo.quantization.tflite import quantize_tflite

    cal = trained["calib"]
    assert np.array_equal(cal.drawn, trained["images"])  # the draw itself stays as drawn
    anchored = trained["images"].copy()
    anchored[0, 0, 0, :], anchored[0, 0, -1, :] = 0, 255
    assert np.array_equal(cal.images, anchored) and not np.array_equal(anchored, trained["images"])

    def rep():
        for img in anchored:
            yield [img[None].astype(np.float32) * RESCALE + OFFSET]

    with captured_output():
        conv = tf.lite.TFLiteConverter.from_keras_model(load_keras_model(trained["run"] / rundir.FLOAT_MODEL))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.float32
        by_hand = conv.convert()
    ours = quantize_tflite(trained["run"] / rundir.FLOAT_MODEL, cal, tmp_path / "m.tflite").path.read_bytes()
    assert _tflite_numbers(ours) == _tflite_numbers(by_hand)
    assert _tflite_numbers(ours) == _tflite_numbers((trained["run"] / rundir.INT8_TFLITE).read_bytes())


# ---------------------------------------------------------------------------
# mixed int4 / int8


def test_mixed_name_format():
    from mcuzoo.quantization.mixed import mixed_name

    assert mixed_name("model", 26.1, 73.9) == "model_qdq_w4_26.1_w8_73.9_a8_100.onnx"
    assert mixed_name("m", 100 / 3, 200 / 3, 100.0) == "m_qdq_w4_33.3_w8_66.7_a8_100.onnx"


def test_mixed_search(trained, qdq, tmp_path):
    from onnx import TensorProto

    from mcuzoo.evaluate import evaluate_model
    from mcuzoo.quantization.mixed import search_mixed
    from mcuzoo.analysis.graph import load_graph
    from mcuzoo.quantization.onnx_qdq import weights_flash

    ds = trained["ds"]
    calls = []

    def eval_fn(path):
        calls.append(path)
        return evaluate_model(path, ds.val, ds.class_names, RESCALE, OFFSET).top1

    res = search_mixed(qdq.parent / "model_float.onnx", trained["calib"], eval_fn,
                       tolerance=0.03, out_dir=tmp_path, max_evals=8)
    assert re.fullmatch(r"model_qdq_w4_\d+\.\d_w8_\d+\.\d_a8_100\.onnx", res.path.name), res.path.name
    w4, w8 = (float(v) for v in re.findall(r"_w[48]_([\d.]+)(?=_)", res.path.name))
    assert w4 + w8 == pytest.approx(100.0, abs=0.05) and w4 > 0
    assert res.evaluations == len(calls) <= 8
    m = _onnx(res.path)
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 21
    assert any(i.data_type == TensorProto.INT4 for i in m.graph.initializer)
    assert res.int4_tensors and res.weights_bytes < res.weights_bytes_int8
    assert weights_flash(res.path).total_bytes == res.weights_bytes == load_graph(res.path).weights_bytes
    assert res.accuracy >= res.accuracy_int8 - 0.03 - 1e-9
    # int4 weights are still per-channel, and the file runs with float in / out
    assert all(len(s) == 1 for _, s in _weight_scales(m))
    # the file kept is the one the search scored (on validation), and it runs on the test split too
    assert evaluate_model(res.path, ds.val, ds.class_names, RESCALE, OFFSET).top1 == pytest.approx(res.accuracy)
    assert evaluate_model(res.path, ds.test, ds.class_names, RESCALE, OFFSET).n == len(ds.test)
    json.dumps(res.summary())


def test_paired_difference_counts_and_standard_error(trained):
    from mcuzoo.evaluate import evaluate_model, paired_difference

    a = np.array([1, 1, 0, 0, 1, 1, 0, 1], dtype=bool)
    b = np.array([1, 0, 1, 0, 0, 1, 0, 1], dtype=bool)
    d = paired_difference(a, b)
    assert (d.n, d.a_only, d.b_only) == (8, 2, 1)
    per_image = b.astype(float) - a.astype(float)
    assert d.diff == pytest.approx(per_image.mean())
    assert d.se == pytest.approx(per_image.std(ddof=1) / np.sqrt(8))
    assert paired_difference(a, a).se == 0 and paired_difference(a, a).diff == 0
    with pytest.raises(McuzooError, match="same images"):
        paired_difference(a, b[:5])
    # evaluate_model gives per-image correctness in split order, consistent with its top-1
    ds = trained["ds"]
    res = evaluate_model(trained["run"] / rundir.INT8_TFLITE, ds.test, ds.class_names, RESCALE, OFFSET, 7)
    assert res.correct.dtype == bool and res.correct.shape == (res.n,) == (len(ds.test),)
    assert res.correct.mean() == pytest.approx(res.top1)


def _int4_tensors(path):
    """Weight tensors held in int4 (the DequantizeLinear data inputs; their zero points are int4 too)."""
    from onnx import TensorProto

    m = _onnx(path)
    int4 = {i.name for i in m.graph.initializer if i.data_type == TensorProto.INT4}
    return sum(n.op_type == "DequantizeLinear" and n.input[0] in int4 for n in m.graph.node)


@pytest.mark.parametrize("confidence,lucky", [(0.5, False), (0.9, False), (0.9, True)])
def test_mixed_search_confidence_guards_against_noisy_validation(trained, qdq, tmp_path, confidence, lucky):
    """Each int4 tensor swaps validation images: 2 each way (no loss on average, but noise), or, when
    ``lucky``, 1 lost and 3 gained. With a plain comparison (0.5) all-int4 passes; at 90 % confidence the
    search keeps only as many int4 tensors as the standard error allows, and a gain does not pay for noise."""
    from mcuzoo.evaluate import paired_difference
    from mcuzoo.quantization.mixed import search_mixed

    n = 200
    reference = np.arange(n) < 120
    lost, gained = (1, 3) if lucky else (2, 2)

    def correct(k):
        c = reference.copy()
        c[:lost * k] = False              # right for int8, wrong here
        c[120:120 + gained * k] = True    # and the other way round
        return c

    def eval_fn(path):
        return correct(_int4_tensors(path))

    res = search_mixed(qdq.parent / "model_float.onnx", trained["calib"], eval_fn,
                       tolerance=0.015, out_dir=tmp_path, max_evals=12, confidence=confidence)
    k = len(res.int4_tensors)
    total = len(res.int4_tensors) + len(res.int8_tensors)
    d = paired_difference(correct(k), reference)
    assert res.drop == pytest.approx(d.diff) and res.drop_se == pytest.approx(d.se)
    assert res.accuracy == pytest.approx(res.accuracy_int8 - d.diff)
    if confidence == 0.5:
        assert k == total and res.w4_share == pytest.approx(100.0)
    else:
        z = 1.2815515655446004
        assert 0 < k < total and max(res.drop, 0) + z * res.drop_se <= 0.015 + 1e-12
        # one more int4 tensor would not have passed: its gain does not count
        more = paired_difference(correct(k + 1), reference)
        assert z * more.se > 0.015 and (more.diff + z * more.se <= 0.015) == lucky
    assert res.confidence == confidence
    with pytest.raises(McuzooError, match="confidence"):
        search_mixed(qdq.parent / "model_float.onnx", trained["calib"], eval_fn,
                     out_dir=tmp_path, confidence=1.0)


# ---------------------------------------------------------------------------
# per-layer report


def test_quant_report_ranks_layers_and_writes_png(trained, tmp_path):
    from mcuzoo.quantization.report import quant_report, report_table, write_report

    run = trained["run"]
    errs = quant_report(run / rundir.FLOAT_MODEL, run / rundir.INT8_TFLITE, trained["calib"], max_images=16)
    # conv1..conv5 (fused conv/bn/relu), GAP and the softmax output
    assert errs.matched >= 7 and errs.layers_total == 18 and errs.images == 16
    assert {"conv1_relu", "dwconv2_relu", "conv5_relu", "avg_pool", "predictions"} <= {e.layer for e in errs}
    sq = [e.sqnr_db for e in errs]
    assert all(np.isfinite(sq)) and sq == sorted(sq)
    assert all(10 < s < 80 for s in sq) and all(0.9 < e.cosine <= 1.0 + 1e-9 for e in errs)
    png, js = write_report(errs, tmp_path / "r.png", tmp_path / "r.json")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["matched"] == errs.matched and data["rows"][0]["layer"] == errs[0].layer
    assert report_table(errs).row_count == errs.matched


def test_report_table_never_cuts_numbers_on_a_narrow_terminal():
    import io

    from rich.console import Console

    from mcuzoo.quantization.report import LayerError, LayerErrors, report_table

    rows = [LayerError(f"fire{i}_expand3x3_relu_with_a_long_name", "BatchNormalization", i, [14, 14, 192],
                       10.0 + i, 0.99, 0.05, 0.1, 1.0, f"t{i}", "MUL") for i in range(12)]
    errs = LayerErrors(rows, layers_total=30, images=4)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(report_table(errs))
    text = out.getvalue()
    assert max(map(len, text.splitlines())) <= 80
    for i in range(12):
        assert f" {i + 1} " in text  # ranks 10-12 are not cut to "1"
    assert text.count("14x14x192") == 12 and "SQNR dB" in text and "21.0" in text


def test_report_refuses_an_unrelated_tflite(trained, tmp_path):
    from mcuzoo.models import build_model
    from mcuzoo.quantization.report import quant_report

    other = build_model("st_mnist_v1", (32, 32, 1), 10)
    with pytest.raises(McuzooError, match="model takes"):
        quant_report(other, trained["run"] / rundir.INT8_TFLITE, trained["calib"])
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFileError, match="TFL3"):
        quant_report(trained["model"], bad, trained["calib"])


# ---------------------------------------------------------------------------
# CLI verb and pipeline hook


def test_quantize_verb_on_a_run_directory(trained, capsys):
    from mcuzoo.evaluate import evaluate_model
    from mcuzoo.quantization.cli import register_cli

    run = trained["run"]
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    parser = argparse.ArgumentParser(prog="mcuzoo")
    register_cli(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["quantize", str(run), "--onnx", "--report", "--mixed", "--max-evals", "4",
                              "--tolerance", "0.05", "--json"])
    assert args.fn(args) == 0
    res = json.loads(capsys.readouterr().out)
    names = {p.name for p in run.iterdir()}
    assert {"model_float.onnx", "model_qdq_int8.onnx", "quant_report.json", "quant_report.png"} <= names
    mixed = [n for n in names if n.startswith("model_qdq_w4_")]
    assert mixed == [res["mixed"]["file"]]
    assert res["onnx"]["calibration_images"] == 64
    ds = trained["ds"]  # the QDQ model's top-1 as reported is its score on the run's test split
    qdq_top1 = evaluate_model(run / "model_qdq_int8.onnx", ds.test, ds.class_names, RESCALE, OFFSET).top1
    assert res["onnx"]["top1"] == pytest.approx(qdq_top1, abs=1e-6)
    assert res["report"]["matched"] >= 7 and res["evaluation_split"] == "test"
    # nothing that was there changed, and no lock or temporary file is left
    assert all((run / n).stat().st_mtime_ns == t for n, t in before.items())
    assert not [n for n in names if n.startswith(".")]


def test_the_quantize_stage_draws_its_calibration_images_once(trained, tmp_path, monkeypatch):
    import shutil

    from mcuzoo.config import load_config
    from mcuzoo.data import Split
    from mcuzoo.quantization import run_stage

    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    cfg = load_config(run / rundir.CONFIG, ["quantization.report=true", "quantization.report_images=8"])
    draws = []
    take = Split.take
    monkeypatch.setattr(Split, "take", lambda self, n, seed=0: draws.append(n) or take(self, n, seed))
    metrics = run_stage(cfg, trained["ds"], run)
    assert draws == [64]  # the .tflite and the per-layer report use the one draw
    assert metrics["quantization"]["calibration_images"] == 64 and "quant_report" in metrics


def test_run_quant_extras_does_nothing_unless_asked(trained):
    from mcuzoo.config import load_config
    from mcuzoo.quantization.stage import run_quant_extras

    cfg = load_config(trained["run"] / rundir.CONFIG)
    assert run_quant_extras(cfg, trained["ds"], trained["run"]) == {}


# ---------------------------------------------------------------------------
# bad input: one-line errors


def _one_line(e):
    assert "\n" not in str(e.value) and str(e.value)


def test_empty_calibration_set(trained, qdq, tmp_path):
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.onnx_qdq import export_qdq

    empty = np.zeros((0, 28, 28, 1), np.uint8)
    with pytest.raises(McuzooError, match="calibration set is empty") as e:
        Calibration(empty, RESCALE, OFFSET)
    _one_line(e)
    with pytest.raises(McuzooError, match="calibration set is empty"):
        Calibration(None, RESCALE, OFFSET)
    with pytest.raises(McuzooError, match="calibration images are"):
        export_qdq(qdq.parent / "model_float.onnx", Calibration(np.zeros((4, 32, 32, 1), np.uint8), RESCALE, OFFSET),
                   tmp_path)
    with pytest.raises(McuzooError, match="uint8 pixels"):
        Calibration(np.full((2, 28, 28, 1), 0.5, np.float32), RESCALE, OFFSET)
    with pytest.raises(McuzooError, match="rescale"):
        Calibration(trained["images"], 0.0, OFFSET)
    with pytest.raises(McuzooError, match="calibration method"):
        export_qdq(qdq.parent / "model_float.onnx", trained["calib"], tmp_path, calibration_method="kl")
    with pytest.raises(McuzooError, match="opset"):
        export_qdq(qdq.parent / "model_float.onnx", trained["calib"], tmp_path, opset=13)


def test_malformed_onnx(trained, qdq, tmp_path):
    from mcuzoo.evaluate import evaluate_model
    from mcuzoo.quantization.mixed import search_mixed
    from mcuzoo.quantization.onnx_qdq import export_qdq, load_onnx, weights_flash

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xfe" * 10)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((qdq.parent / "model_float.onnx").read_bytes()[:500])
    for bad in (garbage, truncated, tmp_path / "missing.onnx"):
        with pytest.raises(ModelFileError) as e:
            load_onnx(bad)
        _one_line(e)
        with pytest.raises(ModelFileError):
            export_qdq(bad, trained["calib"], tmp_path)
        with pytest.raises(ModelFileError):
            search_mixed(bad, trained["calib"], lambda p: 1.0)
        with pytest.raises(ModelFileError):
            weights_flash(bad)
    with pytest.raises(ModelFileError):
        evaluate_model(garbage, trained["ds"].test, trained["ds"].class_names, RESCALE, OFFSET)


def test_unsupported_layer_is_a_one_line_error(tmp_path):
    import keras
    import tensorflow as tf

    from mcuzoo.quantization.onnx_qdq import export_float_onnx

    class PyOp(keras.layers.Layer):  # an op with no ONNX equivalent
        def call(self, x):
            y = tf.numpy_function(lambda a: a, [x], tf.float32)
            return tf.reshape(y, tf.shape(x))

    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, keras.layers.Flatten()(PyOp()(inp)))
    with pytest.raises(McuzooError, match="ONNX export") as e:
        export_float_onnx(model, tmp_path / "x.onnx")
    _one_line(e)
    assert not (tmp_path / "x.onnx").exists()


def _dead_layer_model(head: str):
    """A tiny model whose layer ``dead`` is ReLU(0 * x - 1): zero on every image. ``head="softmax"``: it feeds the
    softmax (through the pooling); ``head="add"``: it is added to a live branch and followed by another conv."""
    import keras

    keras.utils.set_random_seed(0)
    dead = {"kernel_initializer": "zeros", "bias_initializer": keras.initializers.Constant(-1.0), "activation": "relu"}
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    if head == "softmax":
        x = keras.layers.Softmax()(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 1, name="dead", **dead)(x)))
    else:
        x = keras.layers.Add()([x, keras.layers.Conv2D(4, 1)(keras.layers.Conv2D(4, 1, name="dead", **dead)(x))])
        x = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, x)


def test_a_layer_dead_on_calibration_that_tflm_cannot_run_is_refused(tmp_path):
    """A layer that is zero on every calibration image gets a range of zero, and TFLM's softmax aborts the whole
    program on such an input scale (as a random-init SqueezeNet did, now and then, in test_tflm). The quantizer
    names the layer instead of writing a model the board cannot run."""
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.tflite import quantize_tflite
    from mcuzoo.runtime import dead_activations

    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)).astype(np.uint8)
    out = tmp_path / "dead.tflite"
    with pytest.raises(McuzooError, match=r"TensorFlow Lite Micro cannot run .*'[^']*dead[^']*' .*zero on all 8 "
                                          r"calibration images") as e:
        quantize_tflite(_dead_layer_model("softmax"), Calibration(images, 1 / 255, 0.0), out)
    _one_line(e)
    assert not out.exists()
    # a live model has no dead activation, and is written
    live = _dead_layer_model("add")
    live.get_layer("dead").set_weights([np.ones((1, 1, 4, 4), np.float32), np.zeros(4, np.float32)])
    quantize_tflite(live, Calibration(images, 1 / 255, 0.0), out)
    assert out.exists() and dead_activations(out.read_bytes()) == []


def test_a_layer_dead_on_calibration_that_tflm_runs_gets_a_note(tmp_path, capsys):
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.tflite import quantize_tflite
    from mcuzoo.runtime import dead_activations, probe_tflm

    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)).astype(np.uint8)
    out = tmp_path / "dead.tflite"
    quantize_tflite(_dead_layer_model("add"), Calibration(images, 1 / 255, 0.0), out)
    dead = dead_activations(out.read_bytes())
    assert len(dead) == 1 and "dead" in dead[0]
    assert probe_tflm(out.read_bytes())[0] is not None  # TFLM runs it
    err = capsys.readouterr().err.replace("\n", " ")
    assert re.search(r"note:.*'[^']*dead[^']*' was \(almost\) zero on all 8 calibration images", err), err


def test_a_model_with_a_dead_layer_from_elsewhere_is_named_not_called_hostile(tmp_path, monkeypatch, capsys):
    """The same model written without mcuzoo's check (as another tool would): LiteRT aborts on it too, and analyze
    says which tensor has a zero range instead of calling the file corrupt."""
    from mcuzoo.cli import main
    from mcuzoo.quantization import tflite
    from mcuzoo.quantization.calibration import Calibration

    monkeypatch.setattr(tflite, "_check_dead_activations", lambda *a: None)
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)).astype(np.uint8)
    out = tmp_path / "dead.tflite"
    tflite.quantize_tflite(_dead_layer_model("softmax"), Calibration(images, 1 / 255, 0.0), out)
    assert main(["analyze", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mcuzoo: error:") and "\n" not in err
    assert re.search(r"crashes on it \(signal \d+\): tensor '[^']*dead[^']*' .*quantization range of zero", err), err
    assert "corrupt" not in err
