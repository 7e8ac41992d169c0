"""Quantization stage: post-training int8 .tflite, as on the model cards.

Entry point: :func:`quantize_tflite`. The .tflite takes **uint8** input
(1, H, W, C) holding raw pixels and gives **float32** per-class confidences
(1, P); weights are int8 per-channel (per-tensor on request), activations int8,
calibrated on training images.

Calibration (:class:`~.calibration.Calibration`): the first image anchors the
input range, so that the uint8 input's (scale, zero point) is the preprocessing
itself: a board feeds camera pixels straight in.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import rundir
from ..console import captured_output, console
from ..errors import McuzooError, first_line
from .calibration import Calibration


@dataclass
class QuantResult:
    path: Path
    input_scale: float
    input_zero_point: int
    size_bytes: int


def quantize_tflite(
    model_or_path,
    calibration: Calibration,
    out_path: str | Path,
    per_channel: bool = True,
) -> QuantResult:
    """Convert a float Keras model (or a .keras file) to a fully int8 .tflite (uint8 in, float32 out),
    calibrated on ``calibration``."""
    import tensorflow as tf

    from ..models import load_keras_model

    model = load_keras_model(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    rep = calibration.representative_dataset()
    with captured_output() as log:
        try:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.float32
            if not per_channel:
                conv._experimental_disable_per_channel = True
            flat = conv.convert()
            error = None
        except Exception as e:  # converter errors are long C++ dumps
            error = e
    if error is not None:
        detail = next((ln for ln in reversed(log) if "error" in ln.lower()), first_line(error, None))
        raise McuzooError(f"int8 conversion failed: {detail.strip()[:300]}")
    _check_dead_activations(flat, len(calibration.images))
    out_path = rundir.write_bytes(out_path, flat)

    from ai_edge_litert.interpreter import Interpreter

    det = Interpreter(model_content=flat).get_input_details()[0]
    scale, zp = det["quantization"]
    return QuantResult(out_path, float(scale), int(zp), len(flat))


def _check_dead_activations(flat: bytes, n_images: int) -> None:
    """A layer that was zero on every calibration image gets a range of zero, on which TFLM can abort the whole
    program (measured: when the softmax's input has one). Such a model is tried on TFLM, in a child process: when
    TFLM cannot run it, quantization fails naming the layer; when it can, a note names it."""
    from ..runtime import dead_activations, name_dead, probe_tflm

    dead = dead_activations(flat)
    if not dead:
        return
    what = (f"{name_dead(dead)} was (almost) zero on all {n_images} calibration images: a dead layer (an untrained "
            "or broken model) or calibration images unlike the training data")
    arena, why = probe_tflm(flat)
    if arena is None:
        raise McuzooError(f"int8 conversion: TensorFlow Lite Micro cannot run the int8 model ({why}): {what}")
    console.print(f"[yellow]note:[/] int8 conversion: {what}")
