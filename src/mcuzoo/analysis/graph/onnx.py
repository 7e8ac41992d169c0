"""The .onnx reader of :func:`mcuzoo.analysis.graph.load_graph` (float or QDQ int8/int4 models).

Nodes in topological order, shapes from ``onnx.shape_inference`` with the batch dimension
fixed to 1. QDQ is folded the way an int8 runtime executes it: a ``DequantizeLinear`` of an
initializer *is* the weight (stored as int8, or int4 packed two per byte), and a
``QuantizeLinear -> DequantizeLinear`` pair on an activation makes that activation an int8
tensor. The model's float input keeps its ``QuantizeLinear`` and its float output its
``DequantizeLinear``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ModelFileError, first_line
from .core import Graph, Op, Tensor, _finish, _nbytes

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


def load_onnx(path: Path) -> Graph:
    """The :class:`Graph` of an .onnx file (see the module doc): checked, shapes inferred, QDQ folded."""
    try:
        import onnx  # noqa: F401 - checked once here; the helpers import it again
    except ImportError:  # pragma: no cover - declared dependency
        raise ModelFileError("reading .onnx needs the onnx package") from None
    g = _inferred_graph(path)
    infos = _value_infos(g)
    inits = _initializers(g)
    nodes = [n for n in g.node if n.op_type != "Constant"]
    nodes = _toposort(nodes, set(inits) | {i.name for i in g.input}, path)
    graph_inputs = [i.name for i in g.input if i.name not in inits]
    graph_outputs = [o.name for o in g.output]
    fold = _fold_qdq(nodes, inits, infos, graph_inputs, graph_outputs)
    table = _TensorTable(path, fold, inits, infos)
    for name in graph_inputs:
        table.id(name)
    ops: list[Op] = []
    for n in nodes:
        if id(n) not in fold.drop:  # a folded Q/DQ node's scale and zero point stay: quantization parameters
            ops.append(_onnx_op(n, len(ops), table, inits))
    out_ids = [table.id(o) for o in graph_outputs]
    in_ids = [table.ids[fold.resolve(i)] for i in graph_inputs]
    if fold.int8_acts:
        _int8_between_operators(table, fold, set(in_ids) | set(out_ids))
    graph = Graph(str(path), "onnx", table.tensors, ops, in_ids, out_ids)
    if fold.int8_acts:
        graph.notes.append("QDQ model: activations counted as 8-bit, Q/DQ pairs folded")
    return _finish(graph)


def _inferred_graph(path: Path):
    """The file's graph, checked (nodes, domains, no control flow), batch fixed to 1, shapes inferred."""
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelFileError(f"{path} is malformed or truncated: not a valid ONNX model ({first_line(e)})") from None
    g = model.graph
    if not g.node:
        raise ModelFileError(f"{path} is not a usable ONNX model: its graph has no nodes")
    for node in g.node:
        if node.domain not in ONNX_DOMAINS:
            raise ModelFileError(f"{path}: unsupported operator {node.domain}.{node.op_type} (node {node.name or node.output[0]})")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ModelFileError(f"{path}: unsupported operator {node.op_type} with a subgraph (control flow)")
    _fix_batch(g, path)
    try:
        inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path}: ONNX shape inference failed ({first_line(e)})") from None
    return inferred.graph


def _fix_batch(g, path: Path) -> None:
    """Fix the batch dimension (and only it) of the graph inputs to 1; another dynamic dimension is an error."""
    init_names = {i.name for i in g.initializer}
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


def _value_infos(g) -> dict[str, tuple[tuple[int, ...] | None, str]]:
    """(shape or None when a dimension is unknown, dtype) of every typed input, value and output."""
    infos: dict[str, tuple[tuple[int, ...] | None, str]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if not tt.HasField("elem_type") or tt.elem_type == 0:
            continue
        dtype = _onnx_dtype(tt.elem_type)
        shape = None
        if tt.HasField("shape"):
            dims: list = []
            for d in tt.shape.dim:
                dims.append(d.dim_value if d.HasField("dim_value") else None)
            shape = None if any(v is None for v in dims) else tuple(int(v) for v in dims)
        infos[vi.name] = (shape, dtype)
    return infos


def _initializers(g) -> dict[str, tuple[tuple[int, ...], str, object]]:
    """(shape, dtype, initializer or None) of every initializer and every Constant node's output."""
    import onnx
    from onnx import numpy_helper

    inits: dict[str, tuple[tuple[int, ...], str, object]] = {}
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
    return inits


@dataclass
class _Folding:
    """The QDQ folding: tensor names read as others (``rename``), the Q/DQ nodes dropped (by ``id``), the
    storage of the weights a DequantizeLinear makes ((shape, storage dtype, channels) by its output) and the
    activations stored as 8-bit (their quantization channels)."""

    rename: dict[str, str] = field(default_factory=dict)
    drop: set[int] = field(default_factory=set)
    weight_storage: dict[str, tuple[tuple[int, ...], str, int]] = field(default_factory=dict)
    int8_acts: dict[str, int] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        """The name ``name`` is folded into (a chain of renames, cut after 100 steps)."""
        seen = 0
        while name in self.rename and seen < 100:
            name = self.rename[name]
            seen += 1
        return name


def _fold_qdq(nodes, inits, infos, graph_inputs: list[str], graph_outputs: list[str]) -> _Folding:
    """Fold the weights' DequantizeLinear nodes and the activations' Q -> DQ pairs (see the module doc)."""
    fold = _Folding()
    for n in nodes:
        if n.op_type == "DequantizeLinear" and n.input and n.input[0] in inits:
            shape, dtype, _ = inits[n.input[0]]
            qshape = inits[n.input[1]][0] if len(n.input) > 1 and n.input[1] in inits else ()
            fold.weight_storage[n.output[0]] = (shape, dtype, math.prod(qshape) if qshape else 1)
            fold.drop.add(id(n))
    consumers: dict[str, list] = {}
    for n in nodes:
        for t in n.input:
            if t:
                consumers.setdefault(t, []).append(n)
    for n in nodes:
        if n.op_type == "QuantizeLinear" and n.input and n.input[0] not in inits:
            _fold_activation(n, consumers, inits, infos, graph_inputs, graph_outputs, fold)
    return fold


def _fold_activation(n, consumers, inits, infos, graph_inputs: list[str], graph_outputs: list[str],
                     fold: _Folding) -> None:
    """Fold the QuantizeLinear ``n`` and the DequantizeLinear nodes reading it: its input becomes an 8-bit tensor.

    A graph input keeps its QuantizeLinear (its output is the 8-bit tensor); a DequantizeLinear that makes a
    graph output stays. Nothing is folded when the float input is also read elsewhere.
    """
    x, q = n.input[0], n.output[0]
    dqs = consumers.get(q, [])
    if not dqs or any(c.op_type != "DequantizeLinear" for c in dqs) or q in graph_outputs:
        return
    if len(consumers.get(x, [])) != 1 and x not in graph_inputs:
        return  # x also read in float elsewhere: keep everything
    scale = inits.get(n.input[1]) if len(n.input) > 1 else None
    nq = math.prod(scale[0]) if scale and scale[0] else 1
    qdtype = infos.get(q, (None, "int8"))[1]
    if x in graph_inputs:
        for dq in dqs:
            if dq.output[0] not in graph_outputs:
                fold.rename[dq.output[0]] = q
                fold.drop.add(id(dq))
        fold.int8_acts[q] = nq
        return
    fold.drop.add(id(n))
    fold.int8_acts[x] = nq
    infos[x] = (infos.get(x, (None, qdtype))[0], qdtype)
    for dq in dqs:
        if dq.output[0] in graph_outputs:
            fold.rename[q] = x  # keep this DequantizeLinear, reading x
        else:
            fold.rename[dq.output[0]] = x
            fold.drop.add(id(dq))


class _TensorTable:
    """The graph's tensors by (folded) name, each made on first use: ``id(name)`` is its tensor id."""

    def __init__(self, path: Path, fold: _Folding, inits, infos) -> None:
        self.path, self.fold, self.inits, self.infos = path, fold, inits, infos
        self.ids: dict[str, int] = {}
        self.tensors: dict[int, Tensor] = {}

    def id(self, name: str) -> int:
        name = self.fold.resolve(name)
        if name in self.ids:
            return self.ids[name]
        tid = len(self.ids)
        self.ids[name] = tid
        if name in self.fold.weight_storage:
            shape, dtype, nq = self.fold.weight_storage[name]
            self.tensors[tid] = Tensor(tid, name, shape, dtype, _nbytes(shape, dtype), const=True, quant_channels=nq)
        elif name in self.inits:
            shape, dtype, _ = self.inits[name]
            self.tensors[tid] = Tensor(tid, name, shape, dtype, _nbytes(shape, dtype), const=True)
        else:
            ishape, dtype = self.infos.get(name, (None, "float32"))
            if ishape is None:
                raise ModelFileError(f"{self.path}: the shape of tensor '{name}' cannot be inferred (dynamic shapes are not supported)")
            shape = (1,) + ishape[1:] if ishape and ishape[0] == 0 else ishape
            self.tensors[tid] = Tensor(tid, name, shape, dtype, _nbytes(shape, dtype),
                                       quant_channels=self.fold.int8_acts.get(name, 0))
        return tid


def _onnx_op(n, index: int, table: _TensorTable, inits) -> Op:
    """The :class:`Op` of node ``n``: its kind, and its data inputs (quantization parameters left out)."""
    kind = ONNX_KINDS.get(n.op_type) or ("elementwise" if n.op_type in ONNX_ELEMENTWISE else "other")
    outs = [table.id(t) for t in n.output if t]
    if kind == "quantize":
        ins = [table.id(n.input[0])]  # scale and zero point are quantization parameters, not weights
    elif n.op_type not in QOPERATOR_DATA_INPUTS:
        ins = [table.id(t) for t in n.input if t]
    else:
        # QOperator format: keep the data inputs; the scales/zero points are quantization parameters
        keep = QOPERATOR_DATA_INPUTS[n.op_type]
        names = list(n.input)
        w_scale = {"QLinearConv": 4, "QLinearMatMul": 4}.get(n.op_type)
        if w_scale is not None and len(names) > w_scale and names[w_scale] in inits and len(names) > 3:
            wt = table.tensors[table.id(names[3])]
            wt.quant_channels = max(1, math.prod(inits[names[w_scale]][0]))
        ins = [table.id(names[k]) for k in keep if k < len(names) and names[k]]
    if kind == "conv":
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        xin = table.tensors[ins[0]]
        if group > 1 and len(xin.shape) >= 2 and group == xin.shape[1]:
            kind = "depthwise"
    return Op(index, n.name or f"{n.op_type}_{index}", n.op_type, kind, ins, outs)


def _int8_between_operators(table: _TensorTable, fold: _Folding, io: set[int]) -> None:
    """A QDQ model runs as an int8 model: the float tensors left between two operators (e.g. a Conv's output
    read by a Relu without Q/DQ in between) are fused or int8 on the target too; count them so."""
    act_dtype = next((table.tensors[table.ids[fold.resolve(n)]].dtype for n in fold.int8_acts
                      if fold.resolve(n) in table.ids), "int8")
    for t in table.tensors.values():
        if not t.const and t.id not in io and t.dtype in ("float32", "float16", "float64"):
            t.dtype = act_dtype
            t.nbytes = _nbytes(t.shape, act_dtype)


def _onnx_dtype(elem_type: int) -> str:
    import onnx

    special: dict[int, str] = {
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
    written: set[str] = set()
    for n in nodes:  # static single assignment: one writer per tensor, and never a graph input or initializer
        for t in n.output:
            if t and (t in written or t in avail):
                raise ModelFileError(f"{path} is malformed: tensor '{t}' is written twice "
                                     f"(again by node '{n.name or n.op_type}')")
            written.add(t)
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
