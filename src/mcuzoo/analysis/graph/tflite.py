"""The .tflite reader of :func:`mcuzoo.analysis.graph.load_graph` (int8 or float models).

The flatbuffer's identifier ``TFL3`` (bytes 4..8) is checked first, then the LiteRT
interpreter (built without delegates and without allocating tensors) gives the operators
in execution order with their input/output tensor ids and every tensor's shape, dtype and
quantization.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...errors import ModelFileError, first_line
from ...runtime import check_tflite_graph, check_tflite_identifier, check_tflite_tensors, probe_tflite
from .core import Graph, Op, Tensor, _finish, _nbytes

TFLITE_KINDS = {
    "CONV_2D": "conv",
    "CONV_3D": "conv",
    "DEPTHWISE_CONV_2D": "depthwise",
    "FULLY_CONNECTED": "fully_connected",
    "BATCH_MATMUL": "fully_connected",
    "TRANSPOSE_CONV": "conv_transpose",
    "AVERAGE_POOL_2D": "pool",
    "MAX_POOL_2D": "pool",
    "L2_POOL_2D": "pool",
    "MEAN": "reduce",
    "SUM": "reduce",
    "REDUCE_MAX": "reduce",
    "REDUCE_MIN": "reduce",
    "REDUCE_PROD": "reduce",
    "RESHAPE": "reshape",
    "SQUEEZE": "reshape",
    "EXPAND_DIMS": "reshape",
    "CONCATENATION": "concat",
    "SOFTMAX": "softmax",
    "LOG_SOFTMAX": "softmax",
    "QUANTIZE": "quantize",
    "DEQUANTIZE": "quantize",
    "PAD": "pad",
    "PADV2": "pad",
    "MIRROR_PAD": "pad",
}
TFLITE_ELEMENTWISE = {
    "ADD", "SUB", "MUL", "DIV", "MINIMUM", "MAXIMUM", "LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1",
    "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "HARD_SWISH", "ABS", "SQRT", "RSQRT", "EXP", "SQUARE",
    "SQUARED_DIFFERENCE", "NEG", "ELU", "GELU", "FLOOR", "CEIL", "ROUND", "POW", "SIN", "COS", "LOG",
}
_BUILTIN_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")  # builtin operators are named like CONV_2D
TFLITE_UNSUPPORTED = {"CUSTOM", "WHILE", "IF", "CALL_ONCE", "DELEGATE", "CALL", "STABLEHLO_COMPOSITE"}


def load_tflite(path: Path) -> Graph:
    """The :class:`Graph` of a .tflite file (see the module doc): checked, then read from LiteRT's details."""
    data = path.read_bytes()
    check_tflite_identifier(data, path)
    ops_details, tensor_details, in_ids, out_ids = _interpreter_details(data, path)
    check_tflite_tensors(tensor_details, path)
    check_tflite_graph(data, path, len(ops_details), len(tensor_details))
    tensors = _tflite_tensors(tensor_details)
    ops = _tflite_ops(ops_details, tensors, path)
    # Constants: tensors that no operator writes and that are not graph inputs (variables are not
    # used by these models; a variable tensor would also be counted here, as flash).
    produced = {t for op in ops for t in op.outputs}
    for t in tensors.values():
        if t.id not in produced and t.id not in in_ids:
            t.const = True
    return _finish(Graph(str(path), "tflite", tensors, ops, in_ids, out_ids))


def _interpreter_details(data: bytes, path: Path) -> tuple[list[dict], list[dict], list[int], list[int]]:
    """LiteRT's operator and tensor details, input and output ids, from an interpreter that allocates nothing.

    The model runs through the crash probe first; an interpreter error becomes a one-line ModelFileError that
    says whether an operator is unsupported or the flatbuffer is broken.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover - declared dependency
        raise ModelFileError("reading .tflite needs the ai-edge-litert package") from None
    from ...console import captured_output

    probe_tflite(data, path)
    with captured_output() as log:
        try:
            it = Interpreter(
                model_content=data,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
            ops_details = it._get_ops_details()
            tensor_details = it.get_tensor_details()
            in_ids = [int(d["index"]) for d in it.get_input_details()]
            out_ids = [int(d["index"]) for d in it.get_output_details()]
            err = None
        except Exception as e:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError for bad models
            err = e
    if err is not None:
        detail = first_line(err)
        custom = next((ln for ln in log if "custom op" in ln.lower() or "unsupported" in ln.lower()), None)
        if custom or "op" in detail.lower() and ("resolve" in detail.lower() or "custom" in detail.lower()):
            raise ModelFileError(f"{path}: unsupported operator ({(custom or detail).strip()[:200]})")
        if "flatbuffer" in detail.lower():
            raise ModelFileError(f"{path} is malformed or truncated: not a valid TensorFlow Lite flatbuffer")
        raise ModelFileError(f"cannot read {path}: {detail}")
    return ops_details, tensor_details, in_ids, out_ids


def _tflite_tensors(tensor_details: list[dict]) -> dict[int, Tensor]:
    """Every tensor by id, the batch dimension set to 1, with its quantization channels."""
    import numpy as np

    tensors: dict[int, Tensor] = {}
    for d in tensor_details:
        idx = int(d["index"])
        shape = tuple(int(s) for s in d["shape"])
        if shape and shape[0] == 0:
            shape = (1,) + shape[1:]
        dtype = np.dtype(d["dtype"]).name
        q = d.get("quantization_parameters") or {}
        nq = len(q.get("scales", ())) if q else 0
        tensors[idx] = Tensor(idx, str(d["name"]), shape, dtype, _nbytes(shape, dtype), quant_channels=nq)
    return tensors


def _tflite_ops(ops_details: list[dict], tensors: dict[int, Tensor], path: Path) -> list[Op]:
    """The operators in execution order; a custom or control-flow operator, or an unknown tensor, fails."""
    ops: list[Op] = []
    for i, o in enumerate(ops_details):
        name = str(o["op_name"])
        if name in TFLITE_UNSUPPORTED or not _BUILTIN_NAME.match(name):
            # LiteRT reports a custom operator by its custom code (e.g. "FlexErf", "BesselI0e")
            raise ModelFileError(f"{path}: unsupported operator {name} (operator {i}: custom or control flow)")
        kind = TFLITE_KINDS.get(name) or ("elementwise" if name in TFLITE_ELEMENTWISE else "other")
        ins = [int(t) for t in o["inputs"] if int(t) != -1]
        outs = [int(t) for t in o["outputs"] if int(t) >= 0]
        missing = [t for t in ins + outs if t not in tensors]
        if missing:
            raise ModelFileError(f"{path} is malformed: operator {i} ({name}) uses unknown tensor {missing[0]}")
        ops.append(Op(i, _tflite_op_name(name, outs, tensors), name, kind, ins, outs))
    return ops


def _tflite_op_name(op_type: str, outs: list[int], tensors: dict[int, Tensor]) -> str:
    """A readable layer name: the Keras layer name TensorFlow put in the output tensor's name."""
    if not outs:
        return op_type.lower()
    name = tensors[outs[0]].name.split(";")[0]
    parts = [p for p in name.split("/") if p]
    if len(parts) >= 2:
        layer = parts[1]
        if layer.endswith("_1") and not layer[:-2].endswith("_"):
            layer = layer[:-2]
        return layer
    return name or op_type.lower()


#: Name of TFLM's offline memory plan in a .tflite's metadata (micro_allocation_info.cc).
OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"


def offline_memory_plan(data: bytes) -> list[int] | None:
    """The tensor arena offsets of a .tflite's ``OfflineMemoryAllocation`` metadata, None without one.

    The metadata buffer holds int32 words: format version, number of subgraphs, number of offsets n,
    then n offsets (relative to the start of TFLM's non-persistent arena section), one per tensor of
    all subgraphs in order, -1 for a tensor TFLM plans itself. ``mcuzoo export --offline-plan``
    writes it; TFLM's GreedyMemoryPlanner keeps those tensors at those offsets.
    """
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    try:
        model = fb.Model.GetRootAs(bytearray(data), 0)
        for i in range(model.MetadataLength()):
            md = model.Metadata(i)
            if (md.Name() or b"").decode("utf-8", "replace") != OFFLINE_PLAN_METADATA:
                continue
            raw = model.Buffers(md.Buffer()).DataAsNumpy()
            words = np.frombuffer(np.asarray(raw, dtype=np.uint8).tobytes(), dtype="<i4")
            if len(words) < 3 or len(words) < 3 + int(words[2]):
                raise ModelFileError(f"the {OFFLINE_PLAN_METADATA} metadata is truncated")
            return [int(v) for v in words[3 : 3 + int(words[2])]]
    except (IndexError, ValueError, TypeError, AttributeError) as e:  # a malformed flatbuffer
        raise ModelFileError(f"cannot read the {OFFLINE_PLAN_METADATA} metadata: {type(e).__name__}") from None
    return None
