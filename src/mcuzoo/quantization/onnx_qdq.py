"""ONNX QDQ int8 export, as on the model cards: ``<stem>_qdq_int8.onnx``.

Entry point: :func:`export_qdq`. The float Keras model is exported to ONNX with
Keras' own exporter (``model.export(path, format="onnx")``, which uses tf2onnx
for the TensorFlow backend) and kept as ``<stem>_float.onnx``; ONNX Runtime's
``quantize_static`` then writes a QDQ model: QuantizeLinear/DequantizeLinear
pairs around float ops, weights int8 **symmetric per-channel** (per-tensor on
request), activations int8 (or uint8) **asymmetric**, calibrated on training
images. Input and output stay float32, so the file runs anywhere ONNX runs and
:func:`mcuzoo.models.scoring.evaluate_model` scores it like the float model.

Calibration follows :mod:`mcuzoo.quantization.tflite`: the model's float input is
``pixel * rescale + offset``, and the first calibration image gets one pixel at
0 and one at 255 so that the calibrated input range is exactly the image of
[0, 255] under the preprocessing (with min-max calibration the input
QuantizeLinear's scale is then the preprocessing's own ``rescale``).

Before quantization the float graph goes through ONNX Runtime's quantization
pre-processing (shape inference and the basic graph optimisations: a BatchNorm
left as a Mul after a depthwise convolution is folded into its weights, as the
TFLite converter does), in a temporary folder; the kept float model is Keras'
export untouched.

Weights flash of a QDQ model (:func:`weights_flash`) counts what a board would
store: quantized weights at their bit width (int4 packed two per byte, int8 one
byte), int32 biases, one float32 scale and one zero point per channel (or per
tensor), and any float constant left unquantized; shape constants (int64) are
not counted.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
import numpy as np

from .. import rundir
from ..console import captured_output
from ..data.core import preprocess
from ..errors import McuzooError, ModelFileError, first_line

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ACTIVATION_TYPES = ("int8", "uint8")
INPUT_DTYPES = ("float", "uint8")
MIN_OPSET = 17
INT4_OPSET = 21          # int4 QuantizeLinear/DequantizeLinear need opset 21
MAX_OPSET = 21
TF2ONNX_MAX_OPSET = 18   # newest opset tf2onnx 1.17 writes; higher ones are reached with onnx's version converter
WEIGHT_OPS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1, "Gemm": 0}  # op -> per-channel axis of its weight input

_BITS: dict[int, int] = {}  # onnx TensorProto data type -> bits, filled lazily


def float_onnx_name(stem: str = "model") -> str:
    return f"{stem}_float.onnx"


def qdq_name(stem: str = "model") -> str:
    """``model_qdq_int8.onnx``: the name says what the file holds."""
    return f"{stem}_qdq_int8.onnx"


# ---------------------------------------------------------------------------
# calibration data


class Calibration:
    """Calibration images as the model sees them.

    ``images`` are uint8 (N, H, W, C) training images; the model input is
    ``pixel * rescale + offset`` (or the raw pixels for a uint8-input model).
    The first image anchors the input range (a pixel at 0 and one at 255).
    """

    def __init__(self, images, rescale: float, offset: float, batch_size: int = 16):
        images = np.asarray(images) if images is not None else np.zeros((0,))
        if images.ndim == 0 or len(images) == 0:
            raise McuzooError("calibration set is empty: quantization needs training images")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise McuzooError(f"calibration images must be (N, H, W, C), got shape {images.shape}")
        if images.dtype != np.uint8:
            if np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 255:
                raise McuzooError("calibration images must be uint8 pixels (0-255), not preprocessed floats")
            images = images.astype(np.uint8)
        if not (isinstance(rescale, (int, float)) and math.isfinite(rescale) and rescale > 0):
            raise McuzooError(f"preprocessing rescale must be a positive number, got {rescale!r}")
        if not (isinstance(offset, (int, float)) and math.isfinite(offset)):
            raise McuzooError(f"preprocessing offset must be a number, got {offset!r}")
        self.images = np.array(images, copy=True)
        self.images[0, 0, 0, :] = 0
        self.images[0, 0, -1, :] = 255
        self.rescale = float(rescale)
        self.offset = float(offset)
        self.batch_size = max(1, int(batch_size))

    def __len__(self) -> int:
        return int(len(self.images))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def reader(self, input_name: str, input_dtype: str = "float"):
        """An onnxruntime CalibrationDataReader over the batches (supports strided collection)."""
        from onnxruntime.quantization import CalibrationDataReader

        cal = self

        class _Reader(CalibrationDataReader):
            def __init__(self):
                self.start, self.end = 0, None
                self.n = math.ceil(len(cal.images) / cal.batch_size)
                self.i = 0

            def __len__(self):
                return self.n

            def set_range(self, start_index: int, end_index: int):
                self.start, self.end, self.i = start_index, end_index, start_index

            def get_next(self):
                end = self.n if self.end is None else min(self.end, self.n)
                if self.i >= end:
                    return None
                b = cal.batch_size
                x = cal.images[self.i * b:(self.i + 1) * b]
                self.i += 1
                feed = x if input_dtype == "uint8" else preprocess(x, cal.rescale, cal.offset)
                return {input_name: feed}

            def rewind(self):
                self.i = self.start

        return _Reader()


def as_calibration(calibration, rescale: float | None = None, offset: float | None = None) -> Calibration:
    """A :class:`Calibration` from one, or from a (images, rescale, offset) tuple, or from uint8 images."""
    if isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, tuple) and len(calibration) == 3:
        return Calibration(*calibration)
    if rescale is None or offset is None:
        raise McuzooError("calibration images need the preprocessing (rescale and offset)")
    return Calibration(calibration, rescale, offset)


# ---------------------------------------------------------------------------
# ONNX files



def load_onnx(path: str | Path):
    """Load and check an ONNX file; a missing, truncated or malformed file is a one-line ModelFileError."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelFileError(f"{path} is not a valid ONNX model: {first_line(e, 240)}") from None
    if not model.graph.node or not model.graph.input or not model.graph.output:
        raise ModelFileError(f"{path} is not a valid ONNX model: empty graph")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelFileError(f"{path} is not a valid ONNX model: {first_line(e, 240)}") from None
    return model


def opset_of(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _check_opset(opset: int, need: int = MIN_OPSET) -> int:
    try:
        opset = int(opset)
    except (TypeError, ValueError):
        raise McuzooError(f"ONNX opset must be an integer, got {opset!r}") from None
    if not need <= opset <= MAX_OPSET:
        raise McuzooError(f"ONNX opset must be between {need} and {MAX_OPSET}, got {opset}")
    return opset


def _convert_opset(model, opset: int):
    import onnx
    from onnx import version_converter

    if opset_of(model) == opset:
        return model
    try:
        out = version_converter.convert_version(model, opset)
        onnx.checker.check_model(out)
    except Exception as e:  # the converter raises plain RuntimeErrors / ValidationErrors
        raise McuzooError(f"cannot convert the ONNX model to opset {opset}: {first_line(e, 240)}") from None
    return out


def export_float_onnx(model_or_path, out_path: str | Path, opset: int = MIN_OPSET) -> Path:
    """Export a float Keras model (or a .keras file) to ONNX with Keras' exporter; atomic write."""
    import onnx

    from ..models import load_keras_model

    opset = _check_opset(opset)
    model = load_keras_model(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    if not hasattr(model, "export") or not getattr(model, "inputs", None):
        raise McuzooError("ONNX export needs a functional Keras model with a defined input")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise McuzooError("ONNX export supports models with one input and one output")
    if getattr(getattr(model, "dtype_policy", None), "name", "float32") != "float32":
        raise McuzooError(f"ONNX export needs a float32 model, this one uses dtype policy {model.dtype_policy.name}")
    shape = tuple(model.inputs[0].shape[1:])
    if not all(isinstance(d, int) for d in shape):
        raise McuzooError(f"ONNX export needs a fixed input shape, the model has {(None, *shape)}")
    out_path = Path(out_path)
    log: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mcuzoo_onnx_") as tmp:
        raw = Path(tmp) / "export.onnx"
        error: Exception | None = None
        with captured_output() as log, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf2onnx's numpy-2 shims warn on import
            try:
                model(np.zeros((1, *shape), np.float32), training=False)  # Keras exports only a called model
                model.export(str(raw), format="onnx", verbose=False, opset_version=min(opset, TF2ONNX_MAX_OPSET))
            except ImportError as e:
                error = McuzooError(f"ONNX export needs the tf2onnx package ({first_line(e, 240)})")
            except Exception as e:  # tf2onnx raises many kinds on an unsupported op
                error = e
        if error is not None or not raw.is_file():
            if isinstance(error, McuzooError):
                raise error
            detail = next((ln for ln in reversed(log) if "unsupported" in ln.lower() or "error" in ln.lower()), "")
            detail = detail.strip() or (first_line(error, 240) if error else "no file written")
            raise McuzooError(f"ONNX export failed (unsupported layer or op?): {detail[:300]}")
        proto = onnx.load(str(raw))
        # tf2onnx keeps a TensorFlow op it cannot convert as is (and only logs it)
        unsupported = sorted({n.op_type for n in proto.graph.node
                              if n.domain not in ("", "ai.onnx") or not onnx.defs.has(n.op_type)})
        if unsupported:
            raise McuzooError(f"ONNX export failed: unsupported op(s) {', '.join(unsupported)} "
                              "(a layer with no ONNX equivalent)")
        proto = _convert_opset(proto, opset)
        with rundir.atomic_path(out_path) as t:
            onnx.save(proto, str(t))
    return out_path


def _input_info(model) -> tuple[str, tuple]:
    inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    if len(real) != 1:
        raise ModelFileError(f"expected an ONNX model with one input, this one has {len(real)}")
    inp = real[0]
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim)
    return inp.name, dims


def _add_uint8_input(model, rescale: float, offset: float) -> tuple[object, list[str]]:
    """Put Cast -> Mul(rescale) -> Add(offset) in front: the model takes raw uint8 pixels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    name, dims = _input_info(model)
    g = model.graph
    inp = next(i for i in g.input if i.name == name)
    inner = name + "_float"
    # the original input becomes an internal tensor fed by the preprocessing
    for node in g.node:
        for k, x in enumerate(node.input):
            if x == name:
                node.input[k] = inner
    for o in g.output:
        if o.name == name:
            raise McuzooError("cannot add a uint8 input to a model whose input is also an output")
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    g.initializer.extend([
        numpy_helper.from_array(np.array(rescale, np.float32), "mcuzoo_rescale"),
        numpy_helper.from_array(np.array(offset, np.float32), "mcuzoo_offset"),
    ])
    nodes = [
        helper.make_node("Cast", [name], [name + "_cast"], name="mcuzoo_pre_cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", [name + "_cast", "mcuzoo_rescale"], [name + "_scaled"], name="mcuzoo_pre_mul"),
        helper.make_node("Add", [name + "_scaled", "mcuzoo_offset"], [inner], name="mcuzoo_pre_add"),
    ]
    for n in reversed(nodes):
        g.node.insert(0, n)
    onnx.checker.check_model(model)
    return model, [n.name for n in nodes]


@dataclass
class Prepared:
    """A float ONNX model ready for ORT's quantizer (pre-processed, at the target opset)."""

    path: Path
    input_name: str
    input_shape: tuple
    input_dtype: str
    exclude: list[str]
    opset: int
    weights: list[dict] = field(default_factory=list)  # see weight_tensors

    @property
    def axes(self) -> dict[str, int]:
        return {w["name"]: w["axis"] for w in self.weights}


def prepare_float(float_onnx: str | Path, out_path: str | Path, opset: int, input_dtype: str = "float",
                  rescale: float = 1.0, offset: float = 0.0) -> Prepared:
    """ORT quantization pre-processing + opset conversion (+ uint8 input) into ``out_path``."""
    import onnx

    if input_dtype not in INPUT_DTYPES:
        raise McuzooError(f"input_dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    model = load_onnx(float_onnx)
    name, dims = _input_info(model)
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise ModelFileError(f"{float_onnx}: input {name} is not an image batch (N, H, W, C): {dims}")
    out_path = Path(out_path)
    pre = out_path.with_name(out_path.stem + "_pre.onnx")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with captured_output() as log:
        try:
            quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
            error = None
        except Exception as e:
            error = e
    if error is not None:
        # not fatal: quantize_static works on the raw export too, only less folded
        logging.getLogger(__name__).debug("quant_pre_process failed: %s (%s)", error, log[-1:] if log else "")
        shutil.copyfile(float_onnx, pre)
    model = onnx.load(str(pre))
    model = _convert_opset(model, opset)
    exclude: list[str] = []
    if input_dtype == "uint8":
        model, exclude = _add_uint8_input(model, rescale, offset)
    onnx.save(model, str(out_path))
    pre.unlink(missing_ok=True)
    return Prepared(out_path, name, tuple(dims[1:]), input_dtype, exclude, opset_of(model), weight_tensors(model))


def weight_tensors(model) -> list[dict]:
    """Weight initializers of Conv/MatMul/Gemm nodes in a float model: name, op, shape, size, channel axis."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    seen, out = set(), []
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        w = node.input[1]
        if w not in inits or w in seen:
            continue
        if node.op_type == "Gemm":  # B is (K, N) unless transB=1
            axis = 0 if any(a.name == "transB" and a.i == 1 for a in node.attribute) else 1
        else:
            axis = WEIGHT_OPS[node.op_type]
        arr = numpy_helper.to_array(inits[w])
        if arr.ndim < 2 or not np.issubdtype(arr.dtype, np.floating):
            continue
        seen.add(w)
        out.append({"name": w, "node": node.name, "op": node.op_type, "shape": list(arr.shape),
                    "size": int(arr.size), "axis": axis})
    return out


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}
    if name not in table:
        raise McuzooError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {name!r}")
    return table[name]


def _supports_cache() -> bool:
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def quantize_prepared(
    prepared: Prepared,
    calibration: Calibration,
    out_path: str | Path,
    per_channel: bool = True,
    calibration_method: str = "minmax",
    activation_type: str = "int8",
    weight_bits: dict[str, int] | None = None,
    percentile: float = 99.999,
    cache_path: str | Path | None = None,
) -> Path:
    """ORT ``quantize_static`` in QDQ format; ``weight_bits`` maps weight names to 4 (others stay 8)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if activation_type not in ACTIVATION_TYPES:
        raise McuzooError(f"activation type must be one of {', '.join(ACTIVATION_TYPES)}, got {activation_type!r}")
    method = _method(calibration_method)
    if tuple(calibration.image_shape) != tuple(prepared.input_shape):
        raise McuzooError(f"calibration images are {calibration.image_shape} but the model takes {prepared.input_shape}")
    reader = calibration.reader(prepared.input_name, prepared.input_dtype)
    n_batches = len(reader)
    stride = max(d for d in range(1, min(4, n_batches) + 1) if n_batches % d == 0)  # bounded memory
    extra: dict = {
        "WeightSymmetric": True,
        "ActivationSymmetric": False,
        "CalibStridedMinMax": stride,
    }
    if per_channel:
        extra["QDQOpTypePerChannelSupportToAxis"] = {"MatMul": 1}
    if calibration_method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    overrides = {}
    for name, bits in (weight_bits or {}).items():
        if bits == 8:
            continue
        if bits != 4:
            raise McuzooError(f"weight bits must be 4 or 8, got {bits} for {name}")
        if prepared.opset < INT4_OPSET:
            raise McuzooError(f"int4 weights need ONNX opset {INT4_OPSET}, the model is at {prepared.opset}")
        ov = {"quant_type": QuantType.QInt4, "symmetric": True}
        if per_channel:
            ov["axis"] = int(prepared.axes.get(name, 0))
        overrides[name] = [ov]
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    kwargs = {}
    if cache_path is not None and _supports_cache():
        kwargs["calibration_cache_path"] = str(cache_path)
    out_path = Path(out_path)
    error = None
    with _quiet_ort(), captured_output(), rundir.atomic_path(out_path) as tmp:
        try:
            quantize_static(
                str(prepared.path), str(tmp), reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8 if activation_type == "int8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(prepared.exclude),
                calibrate_method=method,
                extra_options=extra,
                **kwargs,
            )
        except Exception as e:  # ORT raises ValueError, RuntimeError, onnx errors...
            error = e
        if error is not None:
            raise McuzooError(f"ONNX quantization failed: {first_line(error, 240)}")
    return out_path


# ---------------------------------------------------------------------------
# the card's QDQ export


def export_qdq(
    model_or_keras_path,
    calibration_images_uint8,
    out_dir: str | Path,
    rescale: float,
    offset: float,
    per_channel: bool = True,
    calibration_method: str = "minmax",
    opset: int = MIN_OPSET,
    input_dtype: str = "float",
    activation_type: str = "int8",
    stem: str = "model",
    percentile: float = 99.999,
    float_onnx: str | Path | None = None,
) -> Path:
    """Float Keras model -> ``<stem>_float.onnx`` and ``<stem>_qdq_int8.onnx`` in ``out_dir``; returns the QDQ path.

    ``model_or_keras_path``: a Keras model, a .keras file, or an existing float
    .onnx file (then it is quantized as is). ``float_onnx``: reuse this float
    export instead of exporting again.
    """
    cal = Calibration(calibration_images_uint8, rescale, offset)
    _method(calibration_method)
    opset = _check_opset(opset)
    if activation_type not in ACTIVATION_TYPES:
        raise McuzooError(f"activation type must be one of {', '.join(ACTIVATION_TYPES)}, got {activation_type!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = model_or_keras_path
    if float_onnx is not None:
        fpath = Path(float_onnx)
    elif isinstance(src, (str, Path)) and Path(src).suffix.lower() == ".onnx":
        fpath = Path(src)
    else:
        fpath = export_float_onnx(src, out_dir / float_onnx_name(stem), opset)
    out = out_dir / qdq_name(stem)
    with tempfile.TemporaryDirectory(prefix="mcuzoo_qdq_") as tmp:
        prepared = prepare_float(fpath, Path(tmp) / "prepared.onnx", opset, input_dtype, rescale, offset)
        quantize_prepared(prepared, cal, out, per_channel, calibration_method, activation_type, percentile=percentile)
    load_onnx(out)  # a quantizer bug must not leave an unloadable file unnoticed
    return out


# ---------------------------------------------------------------------------
# what a QDQ file holds


def _bits(data_type: int) -> int:
    from onnx import TensorProto as T

    if not _BITS:
        _BITS.update({T.INT4: 4, T.UINT4: 4, T.INT8: 8, T.UINT8: 8, T.INT16: 16, T.UINT16: 16,
                      T.INT32: 32, T.UINT32: 32, T.FLOAT: 32, T.FLOAT16: 16, T.INT64: 64, T.DOUBLE: 64})
        for name in ("FLOAT8E4M3FN", "FLOAT8E5M2"):
            if hasattr(T, name):
                _BITS[getattr(T, name)] = 8
    return _BITS.get(data_type, 32)


def _numel(init) -> int:
    return int(np.prod(list(init.dims))) if len(init.dims) else 1


@dataclass
class WeightsFlash:
    """Bytes of constants a board stores for a (QDQ) ONNX model, by kind."""

    int4_params: int = 0
    int8_params: int = 0
    int32_params: int = 0       # biases
    float_params: int = 0       # float constants left unquantized
    other_params: int = 0       # 16-bit and other quantized tensors
    scale_bytes: int = 0        # float32 weight scales (+ zero points when not all zero)
    weight_bytes: int = 0       # quantized tensors at their bit width (int4 packed two per byte)
    total_bytes: int = 0
    tensors: list = field(default_factory=list, repr=False)

    @property
    def quantized_weight_params(self) -> int:
        return self.int4_params + self.int8_params

    @property
    def w4_share(self) -> float:
        n = self.quantized_weight_params
        return 100.0 * self.int4_params / n if n else 0.0

    @property
    def w8_share(self) -> float:
        n = self.quantized_weight_params
        return 100.0 * self.int8_params / n if n else 0.0

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("tensors")
        d["total_kib"] = round(self.total_bytes / 1024, 2)
        d["w4_share"] = round(self.w4_share, 2)
        d["w8_share"] = round(self.w8_share, 2)
        return d


def weights_flash(model_or_path) -> WeightsFlash:
    """Weights flash of an ONNX model (QDQ or float); see the module doc for what is counted."""
    from onnx import TensorProto

    model = load_onnx(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for node in g.node:  # Constant nodes count like initializers
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == 4:  # TENSOR
            inits.setdefault(node.output[0], node.attribute[0].t)
    wf = WeightsFlash()
    counted: set[str] = set()
    for node in g.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = inits[node.input[0]]
        n, bits = _numel(q), _bits(q.data_type)
        wf.weight_bytes += math.ceil(n * bits / 8)
        counted.add(node.input[0])
        counted.update(x for x in node.input[1:3] if x)
        if q.data_type == TensorProto.INT32:
            # biases: their scale is input scale x weight scale, derived on the board, not stored
            wf.int32_params += n
            wf.tensors.append({"name": node.input[0], "bits": bits, "params": n})
            continue
        if bits == 4:
            wf.int4_params += n
        elif bits == 8:
            wf.int8_params += n
        else:
            wf.other_params += n
        scale = inits.get(node.input[1])
        if scale is not None:
            wf.scale_bytes += 4 * _numel(scale)
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is not None:
            from onnx import numpy_helper

            if np.any(numpy_helper.to_array(zp) != 0):  # symmetric weights need no zero points
                wf.scale_bytes += math.ceil(_numel(zp) * _bits(zp.data_type) / 8)
        wf.tensors.append({"name": node.input[0], "bits": bits, "params": n})
    # constants consumed by compute nodes directly (not through a DequantizeLinear)
    shape_inputs = {("Reshape", 1), ("Squeeze", 1), ("Unsqueeze", 1), ("Slice", 1), ("Slice", 2), ("Slice", 3),
                    ("Slice", 4), ("Expand", 1), ("Tile", 1), ("Pad", 1), ("ReduceMean", 1), ("ReduceSum", 1),
                    ("Resize", 1), ("Resize", 2), ("Resize", 3), ("Split", 1), ("ConstantOfShape", 0)}
    for node in g.node:
        if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            continue
        for k, x in enumerate(node.input):
            if not x or x not in inits or x in counted or (node.op_type, k) in shape_inputs:
                continue
            t = inits[x]
            if t.data_type in (TensorProto.INT64,):
                continue
            counted.add(x)
            wf.float_params += _numel(t)
            wf.weight_bytes += math.ceil(_numel(t) * _bits(t.data_type) / 8)
    wf.total_bytes = wf.weight_bytes + wf.scale_bytes
    return wf


def activation_8bit_share(model) -> float:
    """Percent of quantized activation tensors (QuantizeLinear on non-constants) held in 8 bits."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    total = eight = 0
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits:
            continue
        total += 1
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        dt = zp.data_type if zp is not None else TensorProto.UINT8
        eight += dt in (TensorProto.INT8, TensorProto.UINT8)
    return 100.0 * eight / total if total else 0.0


def describe_qdq(path: str | Path) -> dict:
    """What a QDQ file holds: opset, Q/DQ counts, input/output types, per weight the bits and scale shape."""
    from onnx import TensorProto

    model = load_onnx(path)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    q = sum(n.op_type == "QuantizeLinear" for n in g.node)
    dq = [n for n in g.node if n.op_type == "DequantizeLinear"]
    weights = []
    for n in dq:
        if n.input[0] in inits and inits[n.input[0]].data_type != TensorProto.INT32:
            scale = inits.get(n.input[1])
            weights.append({"name": n.input[0], "bits": _bits(inits[n.input[0]].data_type),
                            "shape": list(inits[n.input[0]].dims),
                            "scale_shape": list(scale.dims) if scale is not None else None})
    name, _ = _input_info(model)
    elem = {v: k for k, v in TensorProto.DataType.items()}
    inp = next(i for i in g.input if i.name == name)
    return {
        "opset": opset_of(model), "quantize_nodes": q, "dequantize_nodes": len(dq),
        "input": {"name": name, "type": elem.get(inp.type.tensor_type.elem_type, "?")},
        "outputs": [{"name": o.name, "type": elem.get(o.type.tensor_type.elem_type, "?")} for o in g.output],
        "weights": weights,
    }


@contextlib.contextmanager
def _quiet_ort():
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
