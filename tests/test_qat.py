"""Quantization-aware fine-tuning: the fake-quantized graph, the stage in a run, and its choice on validation."""
import json

import numpy as np
import pytest

from mcuzoo import rundir
from mcuzoo.errors import ConfigError, McuzooError
from mcuzoo.quantization.calibration import Calibration, draw_calibration

TINY = [  # about 29 % top-1 on validation (chance: 3 %): enough for int8 and fine-tuning to matter
    "name=qat", "dataset.samples_per_class=30", "training.epochs=10", "training.batch_size=8",
    "training.learning_rate=0.003", "quantization.calibration_samples=32", "training.verbose=false",
    "stages=[train,quantize]",
]


def _layers_with_fake_quant(qmodel) -> set[str]:
    return {layer.name[: -len("_fakequant")] for layer in qmodel.layers if layer.name.endswith("_fakequant")}


def test_fake_quant_points_follow_the_converters_fusions():
    from mcuzoo.models import build_model
    from mcuzoo.quantization.qat import fake_quant_graph

    model = build_model("st_efficientnet_lc_v1", (32, 32, 3), 5)
    qmodel, taps, fqs = fake_quant_graph(model)
    points = _layers_with_fake_quant(qmodel)
    assert len(fqs) == len(taps.outputs)  # every calibrated range has its float tensor
    fixed = {layer.name[: -len("_fakequant")] for layer in qmodel.layers
             if layer.name.endswith("_fakequant") and layer.fixed is not None}
    assert points == {fq.name[: -len("_fakequant")] for fq in fqs} | fixed
    # conv -> BN -> ReLU6 is one int8 op with one output tensor: only the ReLU's output is quantized
    assert "block2a_expand_relu6" in points and not {"block2a_expand_conv", "block2a_expand_bn"} & points
    # a projection has no activation: its BN output is a tensor, as are the residual add and the SE scale
    assert {"block2b_project_bn", "block2b_add", "block2b_se_excite", "block2b_se_squeeze"} <= points
    assert "block2b_project_conv" not in points
    # no dropout (identity at inference)
    assert not any("drop" in p for p in points)
    # TFLite's fixed output ranges: sigmoid, and the int8 softmax before the float32 output (after int8 logits)
    assert {"block2b_se_sigmoid", "predictions"} <= fixed and "predictions_logits" in points - fixed
    # every convolution and the dense layer run with int8 weights
    weighted = {layer.name for layer in model.layers if hasattr(layer, "kernel")}
    assert {layer.name[: -len("_int8w")] for layer in qmodel.layers if layer.name.endswith("_int8w")} == weighted
    # the fake-quantized model shares the model's weights
    assert {id(w) for w in qmodel.trainable_weights} == {id(w) for w in model.trainable_weights}


def test_fake_quantized_model_is_the_float_model_plus_8_bit_noise():
    import keras

    from mcuzoo.models import build_model
    from mcuzoo.quantization.qat import _set_ranges, fake_quant_graph

    keras.utils.set_random_seed(0)  # an untrained SqueezeNet's last ReLU can be zero on all 16 images (hi = 0)
    model = build_model("squeezenet_v1_0", (48, 48, 3), 4)
    qmodel, taps, fqs = fake_quant_graph(model)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 48, 48, 3), dtype=np.uint8)
    _set_ranges(taps, fqs, Calibration(images, 1 / 255, 0.0))
    for fq in fqs:  # ranges hold 0 and what the float tensor reaches
        assert float(fq.lo.numpy()) <= 0.0 < float(fq.hi.numpy())
    x = images.astype(np.float32) / 255
    f, q = np.asarray(model(x)), np.asarray(qmodel(x))
    assert np.abs(f - q).max() > 0  # it does quantize
    assert np.abs(f - q).max() < 0.05  # by about one 8-bit step per tensor, not more
    assert np.allclose(np.round(q * 256), q * 256, atol=1e-3)  # probabilities in TFLite's int8 softmax steps


def test_fake_quant_graph_can_be_built_twice_from_one_model():
    """Building a copy calls the model's layers again; a second copy must still see one call per layer."""
    from mcuzoo.models import build_model
    from mcuzoo.quantization.qat import _set_ranges, fake_quant_graph

    model = build_model("st_efficientnet_lc_v1", (32, 32, 3), 5)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    outputs = []
    for _ in range(2):
        qmodel, taps, fqs = fake_quant_graph(model)
        _set_ranges(taps, fqs, Calibration(images, 1 / 255, 0.0))
        outputs.append(np.asarray(qmodel(images.astype(np.float32) / 255)))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)


def test_fake_quantized_model_is_closer_to_the_int8_tflite_than_the_float_model_is(trained, tmp_path):
    """The simulation is faithful: the .tflite's outputs lie nearer to it than to the float model's."""
    from mcuzoo.config import load_config
    from mcuzoo.data import load_run_dataset
    from mcuzoo.evaluate import open_model
    from mcuzoo.quantization.qat import _set_ranges, fake_quant_graph
    from mcuzoo.models import load_keras_model
    from mcuzoo.quantization.tflite import quantize_tflite

    cfg = load_config(trained / rundir.CONFIG)
    ds = load_run_dataset(cfg)
    calib = draw_calibration(cfg, ds)
    r, o = cfg.preprocessing.rescale, cfg.preprocessing.offset
    x, _ = ds.val.to_numpy()
    for per_channel in (True, False):
        tfl = quantize_tflite(trained / rundir.FLOAT_MODEL, calib, tmp_path / f"m{per_channel}.tflite",
                              per_channel=per_channel)
        model = load_keras_model(trained / rundir.FLOAT_MODEL)
        qmodel, taps, fqs = fake_quant_graph(model, per_channel=per_channel)
        _set_ranges(taps, fqs, calib)
        xf = x.astype(np.float32) * r + o
        f, q = np.asarray(model(xf)), np.asarray(qmodel(xf))
        t = open_model(tfl.path, r, o)[2](x)
        assert np.abs(t - q).mean() < 0.5 * np.abs(t - f).mean(), per_channel


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    out = tmp_path_factory.mktemp("runs")
    return run(load_config(None, TINY + [f"output_dir={out}"]))


def test_qat_in_a_run_keeps_the_epoch_validation_prefers(trained):
    from mcuzoo.pipeline import run
    from mcuzoo.quantization.qat import QAT_MODEL

    run(resume=trained, overrides=["quantization.qat_epochs=2", "quantization.qat_learning_rate=0.0003",
                                   "quantization.onnx=true", "stages=[train,quantize,evaluate]"])
    m = json.loads((trained / rundir.METRICS).read_text())
    q = m["qat"]
    assert [h["epoch"] for h in q["history"]] == [0, 1, 2] and q["history"][0]["kl"] is None
    assert all(h["kl"] is not None and h["kl"] >= 0 for h in q["history"][1:])
    # the kept epoch is the one whose int8 model's outputs are nearest the float model's on validation
    assert all(h["val_kl"] >= 0 for h in q["history"])
    best = min(q["history"], key=lambda h: h["val_kl"])
    assert q["epoch"] == best["epoch"] and q["val_kl"] == pytest.approx(best["val_kl"])
    assert q["val_drop"] == pytest.approx(best["val_drop"])
    assert q["val_kl"] <= q["val_kl_ptq"] == q["history"][0]["val_kl"] and q["val_n"] > 0
    # the QDQ model comes from the same weights as the .tflite; model_float.onnx stays the float model
    assert m["onnx_qdq"]["source"] == m["quantization"]["source"] and m["onnx_qdq"]["top1"] >= 0
    assert (trained / "model_float.onnx").is_file() and not list(trained.glob("*qat*.onnx"))
    if q["epoch"] > 0:
        assert (trained / QAT_MODEL).is_file() and m["quantization"]["source"] == QAT_MODEL
    else:
        assert not (trained / QAT_MODEL).exists() and m["quantization"]["source"] == rundir.FLOAT_MODEL


def test_fine_tuning_that_hurts_is_not_kept(trained):
    """A learning rate of 1 wrecks the weights: plain post-training int8 (epoch 0) wins on validation."""
    from mcuzoo.pipeline import run
    from mcuzoo.quantization.qat import QAT_MODEL

    (trained / QAT_MODEL).write_bytes(b"stale")  # an earlier run's file does not survive
    run(resume=trained, overrides=["quantization.qat_epochs=1", "quantization.qat_learning_rate=1.0"])
    m = json.loads((trained / rundir.METRICS).read_text())
    assert m["qat"]["epoch"] == 0 and m["qat"]["file"] is None
    assert m["qat"]["history"][1]["val_kl"] > m["qat"]["history"][0]["val_kl"]
    assert not (trained / QAT_MODEL).exists() and m["quantization"]["source"] == rundir.FLOAT_MODEL
    # and without qat_epochs the run is plain post-training int8 again
    run(resume=trained, overrides=["quantization.qat_epochs=0"])
    m = json.loads((trained / rundir.METRICS).read_text())
    assert "qat" not in m and m["quantization"]["source"] == rundir.FLOAT_MODEL
    assert not [p.name for p in trained.iterdir() if ".tmp" in p.name]


def test_bad_qat_settings_are_clear_errors(trained):
    from mcuzoo.config import load_config
    from mcuzoo.data import load_run_dataset
    from mcuzoo.quantization.qat import finetune_qat

    for bad in ("quantization.qat_epochs=-1", "quantization.qat_learning_rate=0", "quantization.qat_epochs=x"):
        with pytest.raises(ConfigError, match="qat_"):
            load_config(None, [bad])
    cfg = load_config(trained / rundir.CONFIG)
    ds = load_run_dataset(cfg)
    calib = draw_calibration(cfg, ds, 8)
    args = (trained / rundir.FLOAT_MODEL, ds, trained)
    with pytest.raises(McuzooError, match="at least 1 epoch"):
        finetune_qat(*args, calib, epochs=0)
    with pytest.raises(McuzooError, match="learning rate"):
        finetune_qat(*args, calib, epochs=1, learning_rate=0)
    empty = type(ds)(ds.name, ds.class_names, ds.train, ds.val.subset(np.arange(0)), ds.test)
    with pytest.raises(McuzooError, match="validation split"):
        finetune_qat(trained / rundir.FLOAT_MODEL, empty, trained, calib, epochs=1)


def test_graphs_the_fine_tuning_cannot_follow_are_refused():
    import keras

    from mcuzoo.quantization.qat import fake_quant_graph

    inp = keras.Input((8,))
    dense = keras.layers.Dense(8)
    shared = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(dense(dense(inp))))
    with pytest.raises(McuzooError, match="'dense.*' is used more than once"):
        fake_quant_graph(shared)
    two = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(3)(inp)])
    with pytest.raises(McuzooError, match="one input and one output"):
        fake_quant_graph(two)
