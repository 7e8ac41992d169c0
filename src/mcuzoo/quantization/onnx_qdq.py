"""ONNX QDQ int8 export, as on the model cards: ``<stem>_qdq_int8.onnx``.

Entry point: :func:`export_qdq`. The float Keras model is exported to ONNX with
Keras' own exporter (``model.export(path, format="onnx")``, which uses tf2onnx
for the TensorFlow backend) and kept as ``<stem>_float.onnx``; ONNX Runtime's
``quantize_static`` then writes a QDQ model: QuantizeLinear/DequantizeLinear
pairs around float ops, weights int8 **symmetric per-channel** (per-tensor on
request), activations int8 (or uint8) **asymmetric**, calibrated on training
images. Input and output stay float32, so the file runs anywhere ONNX runs and
:func:`mcuzoo.models.scoring.evaluate_model` scores it like the float model.

Calibration is the one of the .tflite (:class:`~.calibration.Calibration`): the
first image anchors the input range, so that with min-max calibration the input
QuantizeLinear's scale is the preprocessing's own ``rescale``.

Before quantization the float graph goes through ONNX Runtime's quantization
pre-processing (shape inference and the basic graph optimisations: a BatchNorm
left as a Mul after a depthwise convolution is folded into its weights, as the
TFLite converter does), in a temporary folder; the kept float model is Keras'
export untouched.

Weights flash of a QDQ model (:func:`weights_flash`) is :mod:`mcuzoo.models.flash`'s:
the constants at their stored width (int4 weights packed two per byte, int8 one
byte, int32 biases, float constants left unquantized, the nodes' integer
configuration constants), the scales and zero points apart.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from .. import rundir
from ..console import captured_output
from ..errors import McuzooError, ModelFileError, first_line
from ..models.flash import WeightsFlash, dtype_bits, is_parameter
from ..models.flash import weights_flash as count_weights_flash
from .calibration import Calibration

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ACTIVATION_TYPES = ("int8", "uint8")
INPUT_DTYPES = ("float", "uint8")
MIN_OPSET = 17
INT4_OPSET = 21          # int4 QuantizeLinear/DequantizeLinear need opset 21
MAX_OPSET = 21
TF2ONNX_MAX_OPSET = 18   # newest opset tf2onnx 1.17 writes; higher ones are reached with onnx's version converter
WEIGHT_OPS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1, "Gemm": 0}  # op -> per-channel axis of its weight input

_DTYPES: dict[int, str] = {}  # onnx TensorProto data type -> dtype name, filled lazily


def float_onnx_name(stem: str = "model") -> str:
    return f"{stem}_float.onnx"


def qdq_name(stem: str = "model") -> str:
    """``model_qdq_int8.onnx``: the name says what the file holds."""
    return f"{stem}_qdq_int8.onnx"


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


def _int4_overrides(prepared: Prepared, weight_bits: dict[str, int] | None, per_channel: bool) -> dict:
    """ORT's ``TensorQuantOverrides`` for the weights ``weight_bits`` holds in 4 bits (symmetric, per channel
    along the weight's channel axis unless per tensor); 8-bit weights need none."""
    from onnxruntime.quantization import QuantType

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
    return overrides


def _extra_options(prepared: Prepared, n_batches: int, per_channel: bool, calibration_method: str,
                   weight_bits: dict[str, int] | None, percentile: float) -> dict:
    """``quantize_static``'s ``extra_options``: symmetric weights, asymmetric activations, strided calibration
    (bounded memory), MatMul weights per output channel, the percentile and the int4 overrides."""
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
    overrides = _int4_overrides(prepared, weight_bits, per_channel)
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    return extra


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
    extra = _extra_options(prepared, len(reader), per_channel, calibration_method, weight_bits, percentile)
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
    calibration: Calibration,
    out_dir: str | Path,
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
    export instead of exporting again. ``input_dtype="uint8"`` puts ``calibration``'s preprocessing in front.
    """
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
        prepared = prepare_float(fpath, Path(tmp) / "prepared.onnx", opset, input_dtype,
                                 calibration.rescale, calibration.offset)
        quantize_prepared(prepared, calibration, out, per_channel, calibration_method, activation_type, percentile=percentile)
    load_onnx(out)  # a quantizer bug must not leave an unloadable file unnoticed
    return out


# ---------------------------------------------------------------------------
# what a QDQ file holds


def _dtype(data_type: int) -> str:
    """The dtype name (:mod:`mcuzoo.models.flash`'s) of an ONNX TensorProto data type."""
    from onnx import TensorProto as T

    if not _DTYPES:
        _DTYPES.update({T.INT4: "int4", T.UINT4: "uint4", T.INT8: "int8", T.UINT8: "uint8", T.INT16: "int16",
                        T.UINT16: "uint16", T.INT32: "int32", T.UINT32: "uint32", T.INT64: "int64",
                        T.UINT64: "uint64", T.FLOAT: "float32", T.FLOAT16: "float16", T.BFLOAT16: "bfloat16",
                        T.DOUBLE: "float64", T.BOOL: "bool"})
        for name in ("FLOAT8E4M3FN", "FLOAT8E5M2"):
            if hasattr(T, name):
                _DTYPES[getattr(T, name)] = "float8"
    return _DTYPES.get(data_type, "float32")


def _numel(init) -> int:
    return int(np.prod(list(init.dims))) if len(init.dims) else 1


def _constants(graph) -> dict:
    """Initializers and Constant nodes' tensors, by name."""
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:  # Constant nodes count like initializers
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == 4:  # TENSOR
            inits.setdefault(node.output[0], node.attribute[0].t)
    return inits


def weights_flash(model_or_path) -> WeightsFlash:
    """Weights flash of an ONNX model (QDQ or float), as :mod:`mcuzoo.models.flash` defines it.

    Every constant a node reads, once, at its stored width: a DequantizeLinear's quantized input is a weight
    (int4 packed, int8) or a bias (int32); constants read directly are float weights or, when integers that only
    configure a node (shapes, axes), configuration. The scales and zero points of QuantizeLinear /
    DequantizeLinear nodes are quantization parameters, not weights flash. The same count as
    :attr:`mcuzoo.analysis.graph.Graph.weights_bytes` of the file.
    """
    model = load_onnx(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    inits = _constants(model.graph)
    seen: dict[str, tuple[str, int, str, bool]] = {}
    for node in model.graph.node:
        qdq = node.op_type in ("QuantizeLinear", "DequantizeLinear")
        for k, x in enumerate(node.input):
            if not x or x not in inits or x in seen or (qdq and k > 0):
                continue
            dtype = _dtype(inits[x].data_type)
            parameter = qdq or is_parameter(dtype, node.op_type in WEIGHT_OPS)
            seen[x] = (x, _numel(inits[x]), dtype, parameter)
    return count_weights_flash(seen.values())


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
            weights.append({"name": n.input[0], "bits": dtype_bits(_dtype(inits[n.input[0]].data_type)),
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
