"""Running a saved model file: the one place that picks a runtime for .keras, .tflite and .onnx.

Entry point: :func:`open_model` gives ``(backend, input shape, predict)``, where
``predict(uint8 batch) -> probabilities`` runs the file with Keras (safe mode,
:func:`mcuzoo.models.load_keras_model`), LiteRT (the :class:`mcuzoo.runtime.TfliteRunner`
of :func:`mcuzoo.runtime.open_tflite`, batched: the input is resized to the batch, one
invoke per batch; by default on kernels bit-identical to TensorFlow Lite Micro's, or
XNNPACK when asked) or ONNX Runtime. Inputs follow the card convention: a model with a
uint8 input gets raw pixels; an int8 input gets the preprocessed value quantized with
the input's own scale and zero point; a float input gets the preprocessed float.

A new runtime is one backend function here (returning ``(input shape, predict)``), one
suffix in :func:`open_model` and its package in ``_RUNTIME_PACKAGES``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import rundir
from ..data.core import preprocess
from ..errors import McuzooError, ModelFileError, first_line

__all__ = ["open_model", "kernels_of", "engine_of", "runtime", "MAX_INPUT_ELEMENTS"]


_RUNTIME_PACKAGES = {"keras": ("keras",), "litert": ("ai-edge-litert",), "onnxruntime": ("onnxruntime",)}


def runtime(backend: str) -> str:
    """The backend with its package version, e.g. ``onnxruntime 1.32.0``: int8 results of one model file can differ
    between ONNX Runtime versions and CPUs, so a measured top-1 names what measured it."""
    from importlib.metadata import PackageNotFoundError, version

    for pkg in _RUNTIME_PACKAGES.get(backend, ()):
        try:
            return f"{pkg} {version(pkg)}"
        except PackageNotFoundError:
            pass
    return backend


# ---------------------------------------------------------------------------
# backends: each returns (input_shape, predict(uint8 batch) -> probabilities)


def _need_preprocessing(path: Path, rescale: float | None) -> float:
    """``rescale``, which a float-input model needs: an error naming the missing model_info.json when it is None."""
    if rescale is None:
        raise McuzooError(
            f"{path} takes float input and its preprocessing is unknown (no {rundir.MODEL_INFO} beside it): "
            "pass --rescale and --offset"
        )
    return rescale


def _keras_backend(path: Path, rescale: float | None, offset: float):
    from .loading import load_keras_model

    scale = _need_preprocessing(path, rescale)

    model = load_keras_model(path)
    try:
        shape = tuple(int(d) for d in model.input_shape[1:])
    except (TypeError, ValueError, AttributeError):  # None dimensions, several inputs
        raise ModelFileError(f"{path}: the model has no single input of fixed shape "
                             f"({getattr(model, 'input_shape', '?')})") from None

    def predict(x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(model(preprocess(x, scale, offset), training=False))
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - a model that loads but cannot run (TF and Keras error types)
            raise ModelFileError(f"cannot run {path}: {first_line(e)}") from None

    return shape, predict


def _tflite_backend(path: Path, rescale: float | None, offset: float, runtime: str, workers: int | None):
    from ..runtime import open_tflite

    runner = open_tflite(path.read_bytes(), path, runtime, workers)
    inputs, outputs = runner.inputs, runner.outputs
    if len(inputs) != 1 or not outputs:
        raise ModelFileError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs: an image classifier "
                             "has one input and one output")
    inp, out = inputs[0], outputs[0]
    shape = tuple(int(d) for d in inp["shape"][1:])
    scale = _need_preprocessing(path, rescale) if inp["dtype"] != np.uint8 else 1.0  # raw pixels need none
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]

    def to_input(x: np.ndarray) -> np.ndarray:
        if inp["dtype"] == np.uint8:
            return x.astype(np.uint8)
        f = preprocess(x, scale, offset)
        if inp["dtype"] == np.int8:
            return np.clip(np.round(f / in_scale + in_zp), -128, 127).astype(np.int8)
        return f.astype(inp["dtype"])

    def predict(x: np.ndarray) -> np.ndarray:
        y = runner.run(to_input(x))
        if out["dtype"] in (np.int8, np.uint8):
            y = (y.astype(np.float32) - out_zp) * out_scale
        return y

    predict.runner = runner  # type: ignore[attr-defined]  # its .kernels: what ran (after any fallback)
    return shape, predict


def kernels_of(predict) -> str:
    """The kernels that ran a .tflite's ``predict`` of :func:`open_model` (``exact``, ``xnnpack``, ``builtin``);
    "" for other formats."""
    runner = getattr(predict, "runner", None)
    return str(runner.kernels) if runner is not None else ""


def engine_of(predict) -> str:
    """The exact path's engine that ran a .tflite's ``predict`` (``litert-ref`` or ``tflm``); "" otherwise."""
    runner = getattr(predict, "runner", None)
    return str(runner.engine) if runner is not None else ""


def _onnx_backend(path: Path, rescale: float | None, offset: float):
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception classes
        raise ModelFileError(f"cannot load ONNX model {path}: {first_line(e)}") from None
    inp = sess.get_inputs()[0]
    dims = inp.shape[1:]
    if not all(isinstance(d, int) for d in dims):
        raise ModelFileError(f"{path}: input {inp.name} has no fixed (H, W, C) shape: {inp.shape}")
    shape = tuple(int(d) for d in dims)
    uint8_in = inp.type == "tensor(uint8)"
    scale = 1.0 if uint8_in else _need_preprocessing(path, rescale)  # raw pixels need none

    fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    if fixed_batch is not None and fixed_batch * max(1, math.prod(shape)) > MAX_INPUT_ELEMENTS:
        raise ModelFileError(f"{path}: input {inp.name} has a fixed batch of {fixed_batch} images: too large")

    def run_one(feed: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(sess.run(None, {inp.name: feed})[0])
        except Exception as e:  # onnxruntime's own exception types
            raise ModelFileError(f"cannot run ONNX model {path}: {first_line(e)}") from None

    def predict(x: np.ndarray) -> np.ndarray:
        feed = x.astype(np.uint8) if uint8_in else preprocess(x, scale, offset)
        if fixed_batch is None:
            return run_one(feed)
        # a model exported with a fixed batch (often 1): feed it chunks of that size, padding the last
        outs = []
        for i in range(0, len(feed), fixed_batch):
            chunk = feed[i:i + fixed_batch]
            n = len(chunk)
            if n < fixed_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - n, axis=0)])
            outs.append(run_one(chunk)[:n])
        return np.concatenate(outs)

    return shape, predict



#: Largest model input accepted, in elements of one image (H * W * C): 16384 x 16384 x 1, far above any
#: microcontroller model; a file declaring more (a corrupt or hostile shape) is refused before any allocation.
MAX_INPUT_ELEMENTS = 1 << 28


def _check_input_shape(path: Path, shape: tuple) -> tuple:
    if any(d < 1 for d in shape):
        raise ModelFileError(f"{path}: input shape {tuple(shape)} has an empty or unknown dimension")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ModelFileError(f"{path}: input shape {tuple(shape)} is too large "
                             f"({math.prod(shape):,} elements per image, at most {MAX_INPUT_ELEMENTS:,})")
    return shape


def open_model(path: str | Path, rescale: float | None, offset: float, batch_size: int = 256, runtime: str = "exact",
               workers: int | None = None):
    """(backend name, input shape, predict) for a model file, chosen by its extension.

    A .tflite runs on ``runtime``'s kernels: ``exact`` (default; bit-identical to TFLM, see
    :mod:`mcuzoo.runtime`) or ``xnnpack`` (fast, not MCU-exact); ``workers`` processes for the exact path
    (None: :func:`mcuzoo.runtime.default_workers`). :func:`kernels_of` ``(predict)`` says what ran.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    ext = path.suffix.lower()
    if ext == ".keras":
        backend, (shape, predict) = "keras", _keras_backend(path, rescale, offset)
    elif ext == ".tflite":
        backend, (shape, predict) = "litert", _tflite_backend(path, rescale, offset, runtime, workers)
    elif ext == ".onnx":
        backend, (shape, predict) = "onnxruntime", _onnx_backend(path, rescale, offset)
    else:
        raise ModelFileError(f"{path}: unsupported model format '{ext}' (use .keras, .tflite or .onnx)")
    return backend, _check_input_shape(path, shape), predict
