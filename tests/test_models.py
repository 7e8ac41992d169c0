"""Tests of the model registry, the three seed architectures and the MAC counter."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from mcuzoo.errors import ConfigError
from mcuzoo.models import (
    LayerInfo,
    ModelSpec,
    build_model,
    count_model,
    get_model_spec,
    list_models,
    model_summary,
    total_macs,
)
from mcuzoo.models.layers import ClipLogits

NAMES = ["squeezenet_v1_0", "st_efficientnet_lc_v1", "st_mnist_v1"]


# ----------------------------------------------------------------------------- fixtures
# Models are built once per module: building is the slow part of these tests.


@pytest.fixture(scope="module")
def mnist36():
    return build_model("st_mnist_v1", (28, 28, 1), 36)


@pytest.fixture(scope="module")
def effnet_224_5():
    return build_model("st_efficientnet_lc_v1", (224, 224, 3), 5)


@pytest.fixture(scope="module")
def effnet_128_5():
    return build_model("st_efficientnet_lc_v1", (128, 128, 3), 5)


@pytest.fixture(scope="module")
def squeeze_128_5():
    return build_model("squeezenet_v1_0", (128, 128, 3), 5)


def _shape(model, layer_name):
    return tuple(model.get_layer(layer_name).output.shape)


# ----------------------------------------------------------------------------- registry


def test_list_models_names_and_specs():
    specs = list_models()
    assert [s.name for s in specs] == NAMES
    assert all(isinstance(s, ModelSpec) for s in specs)
    assert all(callable(s.builder) and s.description for s in specs)


def test_model_spec_defaults():
    mnist = get_model_spec("st_mnist_v1")
    assert mnist.default_input_shape == (28, 28, 1)
    assert mnist.default_rescale == pytest.approx(1 / 127.5)
    assert mnist.default_offset == -1.0
    # pixel 0 -> -1, pixel 255 -> +1
    assert 255 * mnist.default_rescale + mnist.default_offset == pytest.approx(1.0)
    for name in ("st_efficientnet_lc_v1", "squeezenet_v1_0"):
        spec = get_model_spec(name)
        assert spec.default_input_shape == (128, 128, 3)
        assert spec.default_rescale == pytest.approx(1 / 255)
        assert spec.default_offset == 0.0


def test_model_spec_is_frozen():
    spec = get_model_spec("st_mnist_v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"


def test_unknown_model_is_config_error():
    with pytest.raises(ConfigError) as exc:
        get_model_spec("resnet50")
    assert str(exc.value) == (
        "unknown model 'resnet50' (known: squeezenet_v1_0, st_efficientnet_lc_v1, st_mnist_v1)"
    )
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model("nope", (28, 28, 1), 10)


# ----------------------------------------------------------------------------- parameter counts (the cards)


def test_st_mnist_params(mnist36):
    assert mnist36.count_params() == 10_372
    trainable = sum(int(np.prod(w.shape)) for w in mnist36.trainable_weights)
    assert trainable == 10_052
    assert mnist36.count_params() - trainable == 320  # BN moving mean and variance
    assert mnist36.output_shape == (None, 36)


@pytest.mark.parametrize("classes, params", [(39, 535_771), (101, 571_545)])
def test_efficientnet_params(classes, params):
    model = build_model("st_efficientnet_lc_v1", (128, 128, 3), classes)
    assert model.count_params() == params
    assert model.output_shape == (None, classes)


def test_efficientnet_params_5_classes(effnet_128_5, effnet_224_5):
    # parameters do not depend on the resolution
    assert effnet_128_5.count_params() == 516_153
    assert effnet_224_5.count_params() == 516_153
    assert effnet_128_5.output_shape == (None, 5)
    assert effnet_224_5.output_shape == (None, 5)


@pytest.mark.parametrize("classes, params", [(39, 559_427), (101, 591_481)])
def test_squeezenet_params(classes, params):
    model = build_model("squeezenet_v1_0", (128, 128, 3), classes)
    assert model.count_params() == params
    assert model.output_shape == (None, classes)


def test_squeezenet_params_5_classes(squeeze_128_5):
    assert squeeze_128_5.count_params() == 541_849
    assert squeeze_128_5.output_shape == (None, 5)


# ----------------------------------------------------------------------------- layer tables


def test_st_mnist_layer_table(mnist36):
    assert _shape(mnist36, "conv1_relu") == (None, 14, 14, 16)
    assert _shape(mnist36, "dwconv2_relu") == (None, 14, 14, 16)
    assert _shape(mnist36, "conv3_relu") == (None, 14, 14, 32)
    assert _shape(mnist36, "dwconv4_relu") == (None, 7, 7, 32)
    assert _shape(mnist36, "conv5_relu") == (None, 7, 7, 64)
    assert mnist36.get_layer("top_dropout").rate == 0.5


def test_efficientnet_stages_at_224(effnet_224_5):
    m = effnet_224_5
    assert _shape(m, "stem_relu6") == (None, 112, 112, 16)
    # last block of each stage: resolutions 112, 56, 28, 14, 14, 7, 7 and widths 8..144
    expected = {
        "block1a_project_bn": (112, 8),
        "block2b_add": (56, 16),
        "block3b_add": (28, 24),
        "block4c_add": (14, 40),
        "block5c_add": (14, 48),
        "block6d_add": (7, 88),
        "block7a_project_bn": (7, 144),
    }
    for name, (size, channels) in expected.items():
        assert _shape(m, name) == (None, size, size, channels), name
    assert _shape(m, "top_relu6") == (None, 7, 7, 576)


def test_efficientnet_blocks(effnet_128_5):
    m = effnet_128_5
    names = [layer.name for layer in m.layers]
    blocks = sorted({n.split("_")[0] for n in names if n.startswith("block")})
    assert len(blocks) == 16
    # expansion 3 (first stage: none), SE width 0.25 x block input channels
    assert "block1a_expand_conv" not in names
    assert m.get_layer("block1a_se_reduce").filters == 4
    assert m.get_layer("block2a_expand_conv").filters == 24
    assert m.get_layer("block2a_se_reduce").filters == 2
    assert m.get_layer("block2b_se_reduce").filters == 4
    assert m.get_layer("block6b_expand_conv").filters == 264
    assert m.get_layer("block6b_se_reduce").filters == 22
    assert m.get_layer("block7a_project_conv").filters == 144
    assert m.get_layer("block3a_dwconv").kernel_size == (5, 5)
    # relu6 everywhere, no swish, no Lambda
    kinds = {type(layer).__name__ for layer in m.layers}
    assert "Lambda" not in kinds
    for layer in m.layers:
        if isinstance(layer, keras.layers.ReLU):
            assert layer.max_value == 6.0, layer.name
        if isinstance(layer, keras.layers.Activation):
            assert layer.activation.__name__ == "sigmoid", layer.name
    # the SE clip is a named ClipLogits right before the sigmoid
    clip = m.get_layer("block4b_se_clip")
    assert isinstance(clip, ClipLogits) and (clip.min, clip.max) == (-4.0, 4.0)
    assert sum(isinstance(layer, ClipLogits) for layer in m.layers) == 16


def test_efficientnet_drop_connect(effnet_128_5):
    m = effnet_128_5
    drops = {layer.name: layer for layer in m.layers if layer.name.endswith("_drop")}
    adds = [layer.name for layer in m.layers if isinstance(layer, keras.layers.Add)]
    # residual blocks: 2b, 3b, 4b, 4c, 5b, 5c, 6b, 6c, 6d (9 of 16)
    assert len(adds) == 9
    assert sorted(n[: -len("_drop")] for n in drops) == sorted(n[: -len("_add")] for n in adds)
    # block index b (0-based, over all 16 blocks): rate 0.2 * b / 16
    order = ["1a", "2a", "2b", "3a", "3b", "4a", "4b", "4c", "5a", "5b", "5c", "6a", "6b", "6c", "6d", "7a"]
    for name, layer in drops.items():
        b = order.index(name[len("block") : -len("_drop")])
        assert layer.rate == pytest.approx(0.2 * b / 16), name
        assert tuple(layer.noise_shape) == (None, 1, 1, 1)
    assert m.get_layer("top_dropout").rate == pytest.approx(0.35)


def test_squeezenet_layer_table(squeeze_128_5):
    m = squeeze_128_5
    assert _shape(m, "conv1") == (None, 61, 61, 96)
    assert _shape(m, "pool1") == (None, 30, 30, 96)
    assert _shape(m, "fire2_concat") == (None, 30, 30, 128)
    assert _shape(m, "fire4_concat") == (None, 30, 30, 256)
    assert _shape(m, "pool2") == (None, 14, 14, 256)
    assert _shape(m, "fire7_concat") == (None, 14, 14, 384)
    assert _shape(m, "pool3") == (None, 6, 6, 384)
    assert _shape(m, "fire9_concat") == (None, 6, 6, 512)
    assert _shape(m, "conv10_bn") == (None, 6, 6, 5)
    names = [layer.name for layer in m.layers]
    assert "fire8_squeeze" not in names
    assert m.get_layer("fire2_squeeze").filters == 16
    assert m.get_layer("fire6_expand3x3").filters == 192
    # BN after the squeeze ReLU; the head is conv -> ReLU -> BN -> GAP -> softmax
    i = names.index("fire3_squeeze")
    assert names[i : i + 3] == ["fire3_squeeze", "fire3_squeeze_relu", "fire3_squeeze_bn"]
    assert names[-6:] == ["top_dropout", "conv10", "conv10_relu", "conv10_bn", "avg_pool", "predictions"]


# ----------------------------------------------------------------------------- any input size


@pytest.mark.parametrize(
    "name, shape",
    [
        ("st_mnist_v1", (28, 28, 1)),
        ("st_mnist_v1", (32, 32, 3)),
        ("st_mnist_v1", (40, 36, 1)),
        ("st_mnist_v1", (9, 13, 1)),
        ("st_efficientnet_lc_v1", (32, 32, 3)),
        ("st_efficientnet_lc_v1", (40, 36, 1)),
        ("squeezenet_v1_0", (40, 36, 3)),
        ("squeezenet_v1_0", (35, 35, 1)),  # the smallest possible
    ],
)
def test_small_and_odd_inputs_forward(name, shape):
    model = build_model(name, shape, 7)
    assert model.input_shape == (None, *shape)
    x = np.random.default_rng(0).uniform(0, 1, size=(2, *shape)).astype("float32")
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 7)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_dropout_override(name):
    model = build_model(name, (64, 64, 1), 3, dropout=0.1)
    assert model.get_layer("top_dropout").rate == pytest.approx(0.1)


@pytest.mark.parametrize("name", NAMES)
def test_builder_is_callable_directly(name):
    spec = get_model_spec(name)
    model = spec.builder((48, 48, 3), 4)
    assert model.output_shape == (None, 4)
    assert model.name == name


# ----------------------------------------------------------------------------- impossible arguments


@pytest.mark.parametrize(
    "name, shape, classes, dropout, match",
    [
        ("squeezenet_v1_0", (16, 16, 3), 5, None, r"input 16x16 is too small.*at least 35x35"),
        ("squeezenet_v1_0", (34, 128, 3), 5, None, r"input 34x128 is too small"),
        ("squeezenet_v1_0", (128, 128, 4), 5, None, r"channels must be 1 \(grayscale\) or 3 \(RGB\), got 4"),
        ("st_mnist_v1", (28, 28, 2), 5, None, r"channels must be 1 .* got 2"),
        ("st_efficientnet_lc_v1", (128, 128, 3), 1, None, r"num_classes must be an integer >= 2, got 1"),
        ("st_mnist_v1", (28, 28, 1), 0, None, r"num_classes must be an integer >= 2"),
        ("st_mnist_v1", (28, 28, 1), 2.5, None, r"num_classes must be an integer >= 2"),
        ("st_mnist_v1", (28, 28), 10, None, r"input_shape must be \(height, width, channels\)"),
        ("st_mnist_v1", (0, 28, 1), 10, None, r"height and width must be positive, got 0x28"),
        ("st_mnist_v1", (28.5, 28, 1), 10, None, r"input_shape must be"),
        ("st_mnist_v1", None, 10, None, r"input_shape must be"),
        ("st_efficientnet_lc_v1", (32, 32, 3), 10, 1.0, r"dropout must be in \[0, 1\), got 1.0"),
        ("st_efficientnet_lc_v1", (32, 32, 3), 10, -0.1, r"dropout must be in \[0, 1\)"),
    ],
)
def test_impossible_arguments_are_config_errors(name, shape, classes, dropout, match):
    with pytest.raises(ConfigError, match=match) as exc:
        build_model(name, shape, classes, dropout=dropout)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: ")


@pytest.mark.parametrize(
    "name, shape, classes",
    [
        ("st_mnist_v1", (28, 28, 1), 36),
        ("st_mnist_v1", (9, 13, 3), 2),
        ("st_mnist_v1", (1, 1, 1), 101),
        ("st_efficientnet_lc_v1", (128, 128, 3), 5),
        ("st_efficientnet_lc_v1", (37, 50, 1), 39),
        ("st_efficientnet_lc_v1", (3, 2, 3), 2),
        ("squeezenet_v1_0", (128, 128, 3), 101),
        ("squeezenet_v1_0", (35, 35, 1), 2),
        ("squeezenet_v1_0", (67, 90, 3), 10),
    ],
)
def test_count_model_matches_keras(name, shape, classes):
    """The analytic counters (no Keras graph: what `mcuzoo models` shows) equal the built Keras model's counts."""
    spec = get_model_spec(name)
    assert spec.counter is not None
    model = build_model(name, shape, classes)
    assert count_model(name, shape, classes) == (model.count_params(), total_macs(model))


@pytest.mark.parametrize("name, shape, classes, dropout, match", [
    ("squeezenet_v1_0", (16, 16, 3), 5, None, r"input 16x16 is too small"),
    ("st_mnist_v1", (28, 28, 2), 5, None, r"channels must be 1"),
    ("st_efficientnet_lc_v1", (128, 128, 3), 1, None, r"num_classes must be an integer >= 2"),
])
def test_count_model_refuses_as_build_model(name, shape, classes, dropout, match):
    with pytest.raises(ConfigError, match=match):
        count_model(name, shape, classes)


def test_listing_models_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from mcuzoo.cli import main; rc = main(['models', '--json']); "
            "assert rc == 0; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    rows = json.loads(res.stdout)
    assert {r["model"] for r in rows} == set(NAMES)
    mnist = next(r for r in rows if r["model"] == "st_mnist_v1")
    assert (mnist["params"], mnist["macs"]) == count_model("st_mnist_v1", (28, 28, 1), 10)


def test_config_error_from_builder_directly():
    with pytest.raises(ConfigError, match="too small"):
        get_model_spec("squeezenet_v1_0").builder((20, 20, 3), 5)


# ----------------------------------------------------------------------------- serialisation


def test_clip_logits_layer():
    layer = ClipLogits(min=-4, max=4, name="clip")
    y = np.asarray(layer(np.array([[-10.0, -4.0, 0.5, 4.0, 9.0]], dtype="float32")))
    np.testing.assert_allclose(y, [[-4.0, -4.0, 0.5, 4.0, 4.0]])
    config = layer.get_config()
    assert config["min"] == -4.0 and config["max"] == 4.0
    clone = ClipLogits.from_config(config)
    assert (clone.min, clone.max, clone.name) == (-4.0, 4.0, "clip")
    assert keras.saving.get_registered_name(ClipLogits) == "mcuzoo>ClipLogits"
    with pytest.raises(ValueError):
        ClipLogits(min=1, max=1)


def test_efficientnet_save_and_load_safe_mode(tmp_path):
    model = build_model("st_efficientnet_lc_v1", (32, 32, 3), 5)
    x = np.random.default_rng(1).uniform(0, 1, size=(3, 32, 32, 3)).astype("float32")
    before = np.asarray(model.predict(x, verbose=0))
    path = tmp_path / "effnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    after = np.asarray(loaded.predict(x, verbose=0))
    np.testing.assert_array_equal(before, after)
    assert isinstance(loaded.get_layer("block1a_se_clip"), ClipLogits)
    assert loaded.count_params() == model.count_params()


def test_no_lambda_layers_anywhere(mnist36, effnet_128_5, squeeze_128_5):
    for model in (mnist36, effnet_128_5, squeeze_128_5):
        assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_build_is_deterministic():
    a = build_model("st_efficientnet_lc_v1", (32, 32, 3), 5)
    b = build_model("st_efficientnet_lc_v1", (32, 32, 3), 5)
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    assert [tuple(w.shape) for w in a.weights] == [tuple(w.shape) for w in b.weights]


# ----------------------------------------------------------------------------- MACs


def test_st_mnist_macs_by_hand(mnist36):
    # From the layer table at 28x28x1, 36 classes (per image):
    conv1 = 3 * 3 * 1 * 16 * 14 * 14  # 28,224
    dwconv2 = 3 * 3 * 16 * 14 * 14  # 28,224
    conv3 = 3 * 3 * 16 * 32 * 14 * 14  # 903,168
    dwconv4 = 3 * 3 * 32 * 7 * 7  # 14,112
    conv5 = 1 * 1 * 32 * 64 * 7 * 7  # 100,352
    dense = 64 * 36  # 2,304
    expected = conv1 + dwconv2 + conv3 + dwconv4 + conv5 + dense
    assert expected == 1_076_384
    assert total_macs(mnist36) == expected

    rows = {row.name: row for row in model_summary(mnist36)}
    assert rows["conv3"].macs == conv3
    assert rows["dwconv4"].macs == dwconv4
    assert rows["predictions"].macs == dense
    assert rows["conv3_bn"].macs == 0 and rows["avg_pool"].macs == 0
    assert rows["conv1"] == LayerInfo("conv1", "Conv2D", (14, 14, 16), 160, conv1)
    assert rows["dwconv2"].kind == "DepthwiseConv2D" and rows["dwconv2"].params == 160
    assert rows["conv1_bn"].params == 64


@pytest.mark.parametrize("fixture", ["mnist36", "effnet_128_5", "effnet_224_5", "squeeze_128_5"])
def test_summary_params_add_up(fixture, request):
    model = request.getfixturevalue(fixture)
    rows = model_summary(model)
    assert all(isinstance(r, LayerInfo) for r in rows)
    assert sum(r.params for r in rows) == model.count_params()
    assert len(rows) == len(model.layers) - 1  # the input layer is left out
    assert rows[-1].output_shape == (model.output_shape[-1],)


def test_efficientnet_macs(effnet_128_5, effnet_224_5):
    rows = {row.name: row for row in model_summary(effnet_224_5)}
    assert rows["stem_conv"].macs == 3 * 3 * 3 * 16 * 112 * 112
    assert rows["block2a_dwconv"].macs == 3 * 3 * 24 * 56 * 56
    assert rows["block2a_se_reduce"].macs == 24 * 2  # on the 1x1 squeezed map
    assert rows["block6b_project_conv"].macs == 264 * 88 * 7 * 7
    assert rows["predictions"].macs == 576 * 5
    # resolution matters for MACs, not for parameters
    assert total_macs(effnet_224_5) == 60_590_512
    assert total_macs(effnet_128_5) == 19_831_552


def test_squeezenet_macs(squeeze_128_5):
    rows = {row.name: row for row in model_summary(squeeze_128_5)}
    assert rows["conv1"].macs == 7 * 7 * 3 * 96 * 61 * 61
    assert rows["fire2_expand3x3"].macs == 3 * 3 * 16 * 64 * 30 * 30
    assert rows["conv10"].macs == 512 * 5 * 6 * 6
    assert total_macs(squeeze_128_5) == 173_375_520


def test_macs_of_nested_and_other_layers():
    inner_in = keras.Input((8, 8, 4))
    inner_out = keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    x_in = keras.Input((8, 8, 4))
    x = inner(x_in)
    x = keras.layers.Conv2D(10, 3, strides=2, padding="valid", groups=2, name="grouped")(x)
    x = keras.layers.Conv2DTranspose(3, 2, strides=2, name="up")(x)
    x = keras.layers.Dense(5, name="dense_on_map")(x)
    outer = keras.Model(x_in, x)
    rows = {row.name: row for row in model_summary(outer)}
    assert rows["inner/sep"].macs == (3 * 3 * 4 + 4 * 6) * 8 * 8
    assert rows["grouped"].output_shape == (3, 3, 10)
    assert rows["grouped"].macs == 3 * 3 * (6 // 2) * 10 * 3 * 3
    assert rows["up"].macs == 2 * 2 * 10 * 3 * 3 * 3  # kernel x input positions
    assert rows["dense_on_map"].macs == 3 * 5 * 6 * 6
    assert sum(r.params for r in rows.values()) == outer.count_params()
    assert total_macs(outer) == sum(r.macs for r in rows.values())
