import functools
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """../shared/data/NAME, or skip: a user's fresh clone has no ../shared, and a checkout beside one may
    lack some of its data sets."""
    p = SHARED_DATA / name
    if not p.is_dir():
        pytest.skip(f"{p} is not present")
    return p


def tiny_float_onnx(rng, batch="N"):
    """Conv 3x3 (3->4, pad 1) -> Relu -> GAP -> Flatten -> Gemm(4->3) -> Softmax, NCHW float input
    (batch, 3, 8, 8), as an onnx ModelProto (opset 17). Draws its weights from ``rng``."""
    import numpy as np
    from onnx import TensorProto as TP
    from onnx import helper as h
    from onnx import numpy_helper as nh

    nodes = [
        h.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c"], ["r"]),
        h.make_node("GlobalAveragePool", ["r"], ["p"]),
        h.make_node("Flatten", ["p"], ["f"]),
        h.make_node("Gemm", ["f", "G"], ["g"]),
        h.make_node("Softmax", ["g"], ["y"]),
    ]
    inits = [nh.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
             nh.from_array(np.zeros(4, np.float32), "B"),
             nh.from_array(rng.standard_normal((4, 3)).astype(np.float32), "G")]
    g = h.make_graph(nodes, "tiny", [h.make_tensor_value_info("x", TP.FLOAT, [batch, 3, 8, 8])],
                     [h.make_tensor_value_info("y", TP.FLOAT, [batch, 3])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@functools.cache
def tiny_tflite_bytes() -> bytes:
    """A float .tflite, built once per process: (1, 8, 8, 3) -> Conv 3x3 (4) -> GAP -> Dense(3) -> Softmax."""
    import keras
    import tensorflow as tf

    from mcuzoo.console import captured_output

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    with captured_output():
        return tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out)).convert()
