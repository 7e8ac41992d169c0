"""One small operator graph for .tflite, .onnx and .keras models.

:func:`load_graph` reads a model file into a :class:`Graph`: operators in
execution order, each with the ids of the tensors it reads and writes, and every
tensor with its shape (batch fixed to 1), dtype, byte size and whether it is a
constant (a weight, in flash) or an activation (in RAM).

- **.tflite** (int8 or float): the flatbuffer's identifier ``TFL3`` (bytes 4..8)
  is checked first, then the LiteRT interpreter (built without delegates and
  without allocating tensors) gives the operators in execution order with their
  input/output tensor ids and every tensor's shape, dtype and quantization.
- **.onnx** (float or QDQ int8/int4): nodes in topological order, shapes from
  ``onnx.shape_inference`` with the batch dimension fixed to 1. QDQ is folded
  the way an int8 runtime executes it: a ``DequantizeLinear`` of an initializer
  *is* the weight (stored as int8, or int4 packed two per byte), and a
  ``QuantizeLinear -> DequantizeLinear`` pair on an activation makes that
  activation an int8 tensor. The model's float input keeps its ``QuantizeLinear``
  and its float output its ``DequantizeLinear``.
- **.keras**: loaded with ``safe_mode=True`` (``mcuzoo.models`` imported first so
  that its custom layers load); one operator per layer in the order Keras runs
  them, float32 tensors; MACs from :func:`mcuzoo.models.model_summary`.

MACs per operator: convolution ``kh*kw*cin/groups*cout*Hout*Wout``, depthwise
``kh*kw*C*Hout*Wout``, fully connected ``in*out`` (per output row). Both follow
from ``prod(weight shape) * output elements / output channels``, whatever the
weight layout (OHWI, 1HWC, OIHW, IO).

Parameters are the elements of weight tensors: float, int8 and int4 constants,
and int32 constants read by a MAC operator (biases). Integer constants that only
configure an operator (reshape shapes, reduction axes, paddings) are counted in
flash bytes but are not parameters. Quantization parameters are counted apart
(:attr:`Graph.quant_params_bytes`): 4 bytes of float32 scale + 4 bytes of int32
zero point per quantization channel of every weight tensor and every
activation. Bias scales are not counted: they are the input scale times the
weight scales and runtimes derive them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelFileError
from ..runtime import check_tflite_tensors, probe_tflite

__all__ = ["Tensor", "Op", "Graph", "load_graph", "MAC_KINDS", "ALIAS_KINDS", "QPARAM_BYTES_PER_CHANNEL"]

#: Bytes counted per quantization channel: float32 scale + int32 zero point.
QPARAM_BYTES_PER_CHANNEL = 8

#: Operator kinds that multiply weights (the ones with MACs).
MAC_KINDS = frozenset({"conv", "depthwise", "fully_connected", "conv_transpose"})
#: Operator kinds whose output is its input with another shape (a runtime may run them in place).
ALIAS_KINDS = frozenset({"reshape"})


@dataclass
class Tensor:
    """A tensor of the graph. ``shape`` has the batch dimension set to 1."""

    id: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, or "int4"/"uint4" for packed 4-bit
    nbytes: int
    const: bool = False
    quant_channels: int = 0  # number of (scale, zero point) pairs; 0 when not quantized
    is_param: bool = False  # a weight or bias (not a shape/axis constant)

    @property
    def elements(self) -> int:
        return math.prod(self.shape) if self.shape else 1


@dataclass
class Op:
    """An operator in execution order. ``inputs``/``outputs`` are tensor ids (constants included)."""

    index: int
    name: str
    op_type: str  # the format's own name: CONV_2D, Conv, Conv2D...
    kind: str  # conv, depthwise, fully_connected, pool, reduce, elementwise, reshape, concat, softmax, quantize, pad, other
    inputs: list[int]
    outputs: list[int]
    macs: int = 0
    params: int = 0  # elements of the weight tensors it reads
    weight_bytes: int = 0  # bytes of the constant tensors it reads
    kernel: tuple[int, int] | None = None  # (kh, kw) for convolutions, from the weight shape


@dataclass
class Graph:
    """Operators in execution order over tensors; see the module docstring."""

    path: str
    format: str  # "tflite" | "onnx" | "keras"
    tensors: dict[int, Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    keras_params: int | None = None  # Keras' own count (BN statistics included) for .keras
    notes: list[str] = field(default_factory=list)

    # -- helpers -----------------------------------------------------------------------------
    def activations(self, ids) -> list[int]:
        """The ids among ``ids`` that are activations (not constants)."""
        return [i for i in ids if i in self.tensors and not self.tensors[i].const]

    def consts(self, ids) -> list[int]:
        return [i for i in ids if i in self.tensors and self.tensors[i].const]

    def producers(self) -> dict[int, int]:
        """Tensor id -> index of the op that writes it."""
        return {t: op.index for op in self.ops for t in op.outputs}

    def consumers(self) -> dict[int, list[int]]:
        """Tensor id -> indices of the ops that read it (in execution order)."""
        out: dict[int, list[int]] = {}
        for op in self.ops:
            for t in dict.fromkeys(op.inputs):
                out.setdefault(t, []).append(op.index)
        return out

    @property
    def params(self) -> int:
        if self.keras_params is not None:
            return self.keras_params
        return sum(t.elements for t in self.tensors.values() if t.const and t.is_param)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def weights_bytes(self) -> int:
        """Bytes of all constant tensors (weights, biases, shape constants): the cards' "weights flash"."""
        return sum(t.nbytes for t in self.tensors.values() if t.const)

    @property
    def quant_params_bytes(self) -> int:
        """8 bytes per quantization channel of weights and activations (bias scales are derived)."""
        n = 0
        for t in self.tensors.values():
            if t.quant_channels and not (t.const and t.dtype == "int32"):
                n += t.quant_channels
        return n * QPARAM_BYTES_PER_CHANNEL


# -- shared helpers ------------------------------------------------------------------------
def _nbytes(shape, dtype: str) -> int:
    import numpy as np

    n = math.prod(shape) if shape else 1
    if dtype in ("int4", "uint4"):
        return (n + 1) // 2
    if dtype == "bool":
        return n
    return n * np.dtype(dtype).itemsize


def _finish(graph: Graph) -> Graph:
    """Mark parameter tensors, then fill per-op MACs, params, weight bytes and kernel sizes."""
    for op in graph.ops:
        for t in graph.consts(op.inputs):
            tt = graph.tensors[t]
            if op.kind in MAC_KINDS or tt.dtype not in ("int32", "int64", "bool"):
                tt.is_param = True
    for op in graph.ops:
        consts = list(dict.fromkeys(graph.consts(op.inputs)))
        if op.kind in MAC_KINDS and consts and op.outputs:
            w = graph.tensors[max(consts, key=lambda i: graph.tensors[i].elements)]
            if op.kind == "conv_transpose":  # kernel x input positions
                src = graph.activations(op.inputs)
                x = graph.tensors[src[-1]] if src else None
                positions = x.elements // max(1, _in_channels(graph, x)) if x else 0
            else:  # kernel x output positions
                positions = graph.tensors[op.outputs[0]].elements // max(1, _out_channels(graph, op))
            op.macs = w.elements * positions
            if len(w.shape) == 4:
                op.kernel = _kernel_hw(graph.format, w.shape)
        op.params = sum(graph.tensors[t].elements for t in consts if graph.tensors[t].is_param)
        op.weight_bytes = sum(graph.tensors[t].nbytes for t in consts)
    return graph


def _kernel_hw(fmt: str, wshape) -> tuple[int, int]:
    if fmt == "onnx":  # OIHW
        return int(wshape[2]), int(wshape[3])
    return int(wshape[1]), int(wshape[2])  # tflite OHWI / 1HWC


def _out_channels(graph: Graph, op: Op) -> int:
    out = graph.tensors[op.outputs[0]]
    if not out.shape:
        return 1
    if graph.format == "onnx" and op.kind in ("conv", "depthwise", "conv_transpose") and len(out.shape) >= 3:
        return int(out.shape[1])  # NCHW
    return int(out.shape[-1])


def _in_channels(graph: Graph, t: Tensor) -> int:
    if not t.shape:
        return 1
    if graph.format == "onnx" and len(t.shape) >= 3:
        return int(t.shape[1])
    return int(t.shape[-1])


def _describe(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


# -- entry point --------------------------------------------------------------------------
def load_graph(model_path: str | Path) -> Graph:
    """Read a .tflite, .onnx or .keras file; ModelFileError (one line) for anything wrong with it."""
    path = Path(model_path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in (".tflite", ".onnx", ".keras"):
        raise ModelFileError(f"{path}: unknown model format '{suffix or path.name}' (expected .tflite, .onnx or .keras)")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e.strerror}") from None
    if size == 0:
        raise ModelFileError(f"{path} is empty")
    if suffix == ".tflite":
        graph = _load_tflite(path)
    elif suffix == ".onnx":
        graph = _load_onnx(path)
    else:
        graph = _load_keras(path)
    if not graph.ops:
        raise ModelFileError(f"{path} has no operators")
    return graph


# -- .tflite ------------------------------------------------------------------------------
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


def _load_tflite(path: Path) -> Graph:
    import numpy as np

    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{path} is not a TensorFlow Lite model (no 'TFL3' identifier)")
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover - declared dependency
        raise ModelFileError("reading .tflite needs the ai-edge-litert package") from None
    from ..console import captured_output

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
        detail = _describe(err)
        custom = next((ln for ln in log if "custom op" in ln.lower() or "unsupported" in ln.lower()), None)
        if custom or "op" in detail.lower() and ("resolve" in detail.lower() or "custom" in detail.lower()):
            raise ModelFileError(f"{path}: unsupported operator ({(custom or detail).strip()[:200]})")
        if "flatbuffer" in detail.lower():
            raise ModelFileError(f"{path} is malformed or truncated: not a valid TensorFlow Lite flatbuffer")
        raise ModelFileError(f"cannot read {path}: {detail}")
    check_tflite_tensors(tensor_details, path)

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

    ops: list[Op] = []
    produced: set[int] = set()
    for i, o in enumerate(ops_details):
        name = str(o["op_name"])
        if name in TFLITE_UNSUPPORTED or not _BUILTIN_NAME.match(name):
            # LiteRT reports a custom operator by its custom code (e.g. "FlexErf", "BesselI0e")
            raise ModelFileError(f"{path}: unsupported operator {name} (operator {i}: custom or control flow)")
        kind = TFLITE_KINDS.get(name) or ("elementwise" if name in TFLITE_ELEMENTWISE else "other")
        ins = [int(t) for t in o["inputs"] if int(t) >= 0]
        outs = [int(t) for t in o["outputs"] if int(t) >= 0]
        missing = [t for t in ins + outs if t not in tensors]
        if missing:
            raise ModelFileError(f"{path} is malformed: operator {i} ({name}) uses unknown tensor {missing[0]}")
        produced.update(outs)
        ops.append(Op(i, _tflite_op_name(name, outs, tensors), name, kind, ins, outs))
    # Constants: tensors that no operator writes and that are not graph inputs (variables are not
    # used by these models; a variable tensor would also be counted here, as flash).
    for t in tensors.values():
        if t.id not in produced and t.id not in in_ids:
            t.const = True
    return _finish(Graph(str(path), "tflite", tensors, ops, in_ids, out_ids))


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


# -- .onnx --------------------------------------------------------------------------------
ONNX_KINDS = {
    "Conv": "conv",
    "ConvInteger": "conv",
    "QLinearConv": "conv",
    "ConvTranspose": "conv_transpose",
    "Gemm": "fully_connected",
    "MatMul": "fully_connected",
    "MatMulInteger": "fully_connected",
    "QLinearMatMul": "fully_connected",
    "MaxPool": "pool",
    "AveragePool": "pool",
    "GlobalAveragePool": "pool",
    "GlobalMaxPool": "pool",
    "QLinearGlobalAveragePool": "pool",
    "QLinearAveragePool": "pool",
    "ReduceMean": "reduce",
    "ReduceSum": "reduce",
    "ReduceMax": "reduce",
    "Reshape": "reshape",
    "Flatten": "reshape",
    "Squeeze": "reshape",
    "Unsqueeze": "reshape",
    "Identity": "reshape",
    "Dropout": "reshape",
    "Concat": "concat",
    "QLinearConcat": "concat",
    "Softmax": "softmax",
    "LogSoftmax": "softmax",
    "QLinearSoftmax": "softmax",
    "QuantizeLinear": "quantize",
    "DequantizeLinear": "quantize",
    "Pad": "pad",
}
ONNX_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu",
    "PRelu", "Min", "Max", "Sqrt", "Exp", "Abs", "Neg", "Pow", "Elu", "Selu", "Gelu", "Erf", "Floor", "Ceil",
    "Round", "BatchNormalization", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "Cast",
}
ONNX_DOMAINS = {"", "ai.onnx", "com.microsoft"}
# Positions of the data inputs (activations, weights, bias) of QOperator-format nodes.
QOPERATOR_DATA_INPUTS = {
    "QLinearConv": (0, 3, 8),
    "QLinearMatMul": (0, 3),
    "QLinearAdd": (0, 3),
    "QLinearMul": (0, 3),
    "ConvInteger": (0, 1),
    "MatMulInteger": (0, 1),
}


def _load_onnx(path: Path) -> Graph:
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:  # pragma: no cover - declared dependency
        raise ModelFileError("reading .onnx needs the onnx package") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelFileError(f"{path} is malformed or truncated: not a valid ONNX model ({_describe(e)})") from None
    g = model.graph
    if not g.node:
        raise ModelFileError(f"{path} is not a usable ONNX model: its graph has no nodes")

    for node in g.node:
        if node.domain not in ONNX_DOMAINS:
            raise ModelFileError(f"{path}: unsupported operator {node.domain}.{node.op_type} (node {node.name or node.output[0]})")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ModelFileError(f"{path}: unsupported operator {node.op_type} with a subgraph (control flow)")

    init_names = {i.name for i in g.initializer}
    # Fix the batch dimension (and only it) of the graph inputs to 1.
    for inp in g.input:
        if inp.name in init_names:
            continue
        dims = inp.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if k == 0:
                d.Clear()
                d.dim_value = 1
            else:
                raise ModelFileError(f"{path}: input '{inp.name}' has a dynamic dimension {k} ({d.dim_param or '?'}): only the batch may be dynamic")
    try:
        inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path}: ONNX shape inference failed ({_describe(e)})") from None
    g = inferred.graph

    infos: dict[str, tuple[tuple[int, ...] | None, str]] = {}

    def add_info(vi):
        tt = vi.type.tensor_type
        if not tt.HasField("elem_type") or tt.elem_type == 0:
            return
        dtype = _onnx_dtype(tt.elem_type)
        shape = None
        if tt.HasField("shape"):
            dims = []
            for d in tt.shape.dim:
                dims.append(d.dim_value if d.HasField("dim_value") else None)
            shape = None if any(v is None for v in dims) else tuple(int(v) for v in dims)
        infos[vi.name] = (shape, dtype)

    for vi in list(g.input) + list(g.value_info) + list(g.output):
        add_info(vi)

    inits = {}
    for init in g.initializer:
        dtype = _onnx_dtype(init.data_type)
        shape = tuple(int(d) for d in init.dims)
        inits[init.name] = (shape, dtype, init)
    for node in g.node:  # Constant nodes are initializers too
        if node.op_type == "Constant" and node.output:
            try:
                arr = numpy_helper.to_array(onnx.helper.get_attribute_value(node.attribute[0]))
            except Exception:  # noqa: BLE001
                continue
            inits[node.output[0]] = (tuple(arr.shape), arr.dtype.name, None)

    nodes = [n for n in g.node if n.op_type != "Constant"]
    nodes = _toposort(nodes, set(inits) | {i.name for i in g.input}, path)

    graph_inputs = [i.name for i in g.input if i.name not in inits]
    graph_outputs = [o.name for o in g.output]

    # --- QDQ folding -------------------------------------------------------------------
    consumers: dict[str, list] = {}
    for n in nodes:
        for t in n.input:
            if t:
                consumers.setdefault(t, []).append(n)
    rename: dict[str, str] = {}
    drop: set[int] = set()
    weight_storage: dict[str, tuple[tuple[int, ...], str, int]] = {}  # DQ output -> (shape, storage dtype, channels)
    int8_acts: dict[str, int] = {}  # activation -> quant channels, stored as 8-bit
    for n in nodes:
        if n.op_type == "DequantizeLinear" and n.input and n.input[0] in inits:
            shape, dtype, _ = inits[n.input[0]]
            nq = inits[n.input[1]][0] if len(n.input) > 1 and n.input[1] in inits else ()
            weight_storage[n.output[0]] = (shape, dtype, math.prod(nq) if nq else 1)
            drop.add(id(n))
    for n in nodes:
        if n.op_type != "QuantizeLinear" or not n.input or n.input[0] in inits:
            continue
        x, q = n.input[0], n.output[0]
        dqs = consumers.get(q, [])
        if not dqs or any(c.op_type != "DequantizeLinear" for c in dqs) or q in graph_outputs:
            continue
        if len(consumers.get(x, [])) != 1 and x not in graph_inputs:
            continue  # x also read in float elsewhere: keep everything
        scale = inits.get(n.input[1]) if len(n.input) > 1 else None
        nq = math.prod(scale[0]) if scale and scale[0] else 1
        qdtype = infos.get(q, (None, "int8"))[1]
        if x in graph_inputs:
            for dq in dqs:
                if dq.output[0] not in graph_outputs:
                    rename[dq.output[0]] = q
                    drop.add(id(dq))
            int8_acts[q] = nq
            continue
        drop.add(id(n))
        int8_acts[x] = nq
        infos[x] = (infos.get(x, (None, qdtype))[0], qdtype)
        for dq in dqs:
            if dq.output[0] in graph_outputs:
                rename[q] = x  # keep this DequantizeLinear, reading x
            else:
                rename[dq.output[0]] = x
                drop.add(id(dq))

    def res(name: str) -> str:
        seen = 0
        while name in rename and seen < 100:
            name = rename[name]
            seen += 1
        return name

    # --- tensors and ops ------------------------------------------------------------------
    ids: dict[str, int] = {}
    tensors: dict[int, Tensor] = {}

    def tensor_id(name: str) -> int:
        name = res(name)
        if name in ids:
            return ids[name]
        tid = len(ids)
        ids[name] = tid
        if name in weight_storage:
            shape, dtype, nq = weight_storage[name]
            tensors[tid] = Tensor(tid, name, shape, dtype, _nbytes(shape, dtype), const=True, quant_channels=nq)
        elif name in inits:
            shape, dtype, _ = inits[name]
            tensors[tid] = Tensor(tid, name, shape, dtype, _nbytes(shape, dtype), const=True)
        else:
            shape, dtype = infos.get(name, (None, "float32"))
            if shape is None:
                raise ModelFileError(f"{path}: the shape of tensor '{name}' cannot be inferred (dynamic shapes are not supported)")
            if shape and shape[0] == 0:
                shape = (1,) + shape[1:]
            tensors[tid] = Tensor(tid, name, shape, dtype, _nbytes(shape, dtype), quant_channels=int8_acts.get(name, 0))
        return tid

    for name in graph_inputs:
        tensor_id(name)
    ops: list[Op] = []
    for n in nodes:
        if id(n) in drop:
            # scale / zero point initializers of folded Q/DQ nodes stay in the file; counted as quant params
            continue
        kind = ONNX_KINDS.get(n.op_type) or ("elementwise" if n.op_type in ONNX_ELEMENTWISE else "other")
        outs = [tensor_id(t) for t in n.output if t]
        if kind == "quantize":
            ins = [tensor_id(n.input[0])]  # scale and zero point are quantization parameters, not weights
        elif n.op_type not in QOPERATOR_DATA_INPUTS:
            ins = [tensor_id(t) for t in n.input if t]
        else:
            # QOperator format: keep the data inputs; the scales/zero points are quantization parameters
            keep = QOPERATOR_DATA_INPUTS[n.op_type]
            names = list(n.input)
            w_scale = {"QLinearConv": 4, "QLinearMatMul": 4}.get(n.op_type)
            if w_scale is not None and len(names) > w_scale and names[w_scale] in inits and len(names) > 3:
                wt = tensors[tensor_id(names[3])]
                wt.quant_channels = max(1, math.prod(inits[names[w_scale]][0]))
            ins = [tensor_id(names[k]) for k in keep if k < len(names) and names[k]]
        if kind == "conv":
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            xin = tensors[ins[0]]
            if group > 1 and len(xin.shape) >= 2 and group == xin.shape[1]:
                kind = "depthwise"
        ops.append(Op(len(ops), n.name or f"{n.op_type}_{len(ops)}", n.op_type, kind, ins, outs))
    out_ids = [tensor_id(o) for o in graph_outputs]
    in_ids = [ids[res(i)] for i in graph_inputs]
    if int8_acts:
        # A QDQ model runs as an int8 model: the float tensors left between two operators (e.g. a
        # Conv's output read by a Relu without Q/DQ in between) are fused or int8 on the target too.
        act_dtype = next((tensors[ids[res(n)]].dtype for n in int8_acts if res(n) in ids), "int8")
        io = set(in_ids) | set(out_ids)
        for t in tensors.values():
            if not t.const and t.id not in io and t.dtype in ("float32", "float16", "float64"):
                t.dtype = act_dtype
                t.nbytes = _nbytes(t.shape, act_dtype)
    graph = Graph(str(path), "onnx", tensors, ops, in_ids, out_ids)
    if int8_acts:
        graph.notes.append("QDQ model: activations counted as 8-bit, Q/DQ pairs folded")
    return _finish(graph)


def _onnx_dtype(elem_type: int) -> str:
    import onnx

    special = {
        onnx.TensorProto.INT4: "int4",
        onnx.TensorProto.UINT4: "uint4",
        onnx.TensorProto.BOOL: "bool",
        onnx.TensorProto.STRING: "object",
    }
    if elem_type in special:
        return special[elem_type]
    try:
        import numpy as np

        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001 - bfloat16, float8...
        return "float16"


def _toposort(nodes, available: set[str], path: Path):
    """Nodes in a valid execution order (ONNX requires it; re-sort if a file does not comply)."""
    avail = set(available)
    ordered, pending = [], list(nodes)
    while pending:
        progressed = False
        rest = []
        for n in pending:
            if all((not t) or t in avail for t in n.input):
                ordered.append(n)
                avail.update(n.output)
                progressed = True
            else:
                rest.append(n)
        if not progressed:
            missing = next(t for t in rest[0].input if t and t not in avail)
            raise ModelFileError(f"{path} is malformed: node '{rest[0].name or rest[0].op_type}' reads '{missing}' which nothing produces")
        pending = rest
    return ordered


# -- .keras -------------------------------------------------------------------------------
KERAS_KINDS = {
    "Conv1D": "conv",
    "Conv2D": "conv",
    "Conv3D": "conv",
    "SeparableConv2D": "conv",
    "DepthwiseConv2D": "depthwise",
    "DepthwiseConv1D": "depthwise",
    "Conv2DTranspose": "conv_transpose",
    "Dense": "fully_connected",
    "MaxPooling2D": "pool",
    "AveragePooling2D": "pool",
    "GlobalAveragePooling2D": "pool",
    "GlobalMaxPooling2D": "pool",
    "Reshape": "reshape",
    "Flatten": "reshape",
    "Dropout": "reshape",
    "SpatialDropout2D": "reshape",
    "Concatenate": "concat",
    "Softmax": "softmax",
    "ZeroPadding2D": "pad",
}


def _load_keras(path: Path) -> Graph:
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is malformed or truncated: not a Keras archive")
    from ..models import load_keras_model

    model = load_keras_model(path)
    return graph_from_keras(model, str(path))


def graph_from_keras(model, path: str = "<keras model>") -> Graph:
    """The :class:`Graph` of an in-memory Keras functional model (float32 tensors)."""
    import keras

    from ..models import model_summary

    if not hasattr(model, "_nodes_by_depth"):
        inner = getattr(model, "_functional", None)  # a built Sequential runs through a Functional of its layers
        if inner is None or not hasattr(inner, "_nodes_by_depth"):
            raise ModelFileError(f"{path}: only functional or sequential Keras models can be analyzed")
        model = inner
    macs_by_name = {}
    for row in model_summary(model):
        top = row.name.split("/")[0]
        macs_by_name[top] = macs_by_name.get(top, 0) + row.macs

    tensors: dict[int, Tensor] = {}
    ids: dict[int, int] = {}

    def tid(kt) -> int:
        key = id(kt)
        if key not in ids:
            i = len(tensors)
            ids[key] = i
            shape = tuple(1 if d is None else int(d) for d in kt.shape)
            dtype = str(getattr(kt, "dtype", "float32") or "float32")
            tensors[i] = Tensor(i, getattr(kt, "name", f"t{i}"), shape, dtype, _nbytes(shape, dtype))
        return ids[key]

    in_ids = [tid(t) for t in model.inputs]
    ops: list[Op] = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            if isinstance(layer, keras.layers.InputLayer):
                continue
            ins = [tid(t) for t in node.input_tensors]
            outs = [tid(t) for t in node.output_tensors]
            wids = []
            for w in layer.weights:
                i = len(tensors)
                shape = tuple(int(d) for d in w.shape)
                dtype = str(w.dtype)
                tensors[i] = Tensor(i, w.path, shape, dtype, _nbytes(shape, dtype), const=True, is_param=True)
                wids.append(i)
            tname = type(layer).__name__
            kind = KERAS_KINDS.get(tname)
            if kind is None:
                kind = "other" if isinstance(layer, keras.Model) else "elementwise"
            op = Op(len(ops), layer.name, tname, kind, ins + wids, outs)
            op.macs = int(macs_by_name.get(layer.name, 0))
            op.params = sum(tensors[i].elements for i in wids)
            op.weight_bytes = sum(tensors[i].nbytes for i in wids)
            if kind in ("conv", "depthwise") and hasattr(layer, "kernel_size"):
                ks = tuple(layer.kernel_size)
                op.kernel = (int(ks[0]), int(ks[-1]))
            ops.append(op)
    out_ids = [tid(t) for t in model.outputs]
    return Graph(path, "keras", tensors, ops, in_ids, out_ids, keras_params=int(model.count_params()))
