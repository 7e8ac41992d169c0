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
    """The :class:`Graph` of an .onnx file (see the module doc).

    Longer than a screen: checking, shape inference, QDQ folding and building the tensors and operators share
    the folded names (``rename``, ``drop``) and the per-tensor storage found on the way; split, they would pass
    half a dozen dictionaries between them.
    """
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:  # pragma: no cover - declared dependency
        raise ModelFileError("reading .onnx needs the onnx package") from None
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
        raise ModelFileError(f"{path}: ONNX shape inference failed ({first_line(e)})") from None
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
            qshape = inits[n.input[1]][0] if len(n.input) > 1 and n.input[1] in inits else ()
            weight_storage[n.output[0]] = (shape, dtype, math.prod(qshape) if qshape else 1)
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
            ishape, dtype = infos.get(name, (None, "float32"))
            if ishape is None:
                raise ModelFileError(f"{path}: the shape of tensor '{name}' cannot be inferred (dynamic shapes are not supported)")
            shape = (1,) + ishape[1:] if ishape and ishape[0] == 0 else ishape
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
