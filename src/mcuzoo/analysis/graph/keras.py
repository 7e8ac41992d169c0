"""The .keras reader of :func:`mcuzoo.analysis.graph.load_graph`, and :func:`graph_from_keras` for a model in memory.

Loaded with ``safe_mode=True`` (``mcuzoo.models`` imported first so that its custom layers
load); one operator per layer in the order Keras runs them, float32 tensors; MACs from
:func:`mcuzoo.models.model_summary`.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import ModelFileError
from .core import Graph, Op, Tensor, _nbytes

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


def load_keras(path: Path) -> Graph:
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is malformed or truncated: not a Keras archive")
    from ...models import load_keras_model

    model = load_keras_model(path)
    return graph_from_keras(model, str(path))


def graph_from_keras(model, path: str = "<keras model>") -> Graph:
    """The :class:`Graph` of an in-memory Keras functional model (float32 tensors)."""
    import keras

    from ...models import model_summary

    if not hasattr(model, "_nodes_by_depth"):
        inner = getattr(model, "_functional", None)  # a built Sequential runs through a Functional of its layers
        if inner is None or not hasattr(inner, "_nodes_by_depth"):
            raise ModelFileError(f"{path}: only functional or sequential Keras models can be analyzed")
        model = inner
    macs_by_name: dict[str, int] = {}
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
