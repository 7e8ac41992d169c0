"""The operator graph every reader fills: :class:`Tensor`, :class:`Op`, :class:`Graph`, and the counts.

MACs per operator: convolution ``kh*kw*cin/groups*cout*Hout*Wout``, depthwise
``kh*kw*C*Hout*Wout``, fully connected ``in*out`` (per output row). Both follow
from ``prod(weight shape) * output elements / output channels``, whatever the
weight layout (OHWI, 1HWC, OIHW, IO).

Parameters are the elements of weight tensors: float, int8 and int4 constants,
and int32 constants read by a MAC operator (biases). Integer constants that only
configure an operator (reshape shapes, reduction axes, paddings) are counted in
flash bytes but are not parameters. Weights flash (:attr:`Graph.weights_bytes`)
is :mod:`mcuzoo.models.flash`'s definition. Quantization parameters are counted apart
(:attr:`Graph.quant_params_bytes`): 4 bytes of float32 scale + 4 bytes of int32
zero point per quantization channel of every weight tensor and every
activation. Bias scales are not counted: they are the input scale times the
weight scales and runtimes derive them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...models.flash import QPARAM_BYTES_PER_CHANNEL, is_parameter, stored_bytes, weights_flash

__all__ = ["Tensor", "Op", "Graph", "MAC_KINDS", "ALIAS_KINDS", "QPARAM_BYTES_PER_CHANNEL"]

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
        """Weights flash (:mod:`mcuzoo.models.flash`): every constant tensor at its stored width (weights, biases,
        shape constants), quantization parameters apart; the cards' "weights flash"."""
        consts = [t for t in self.tensors.values() if t.const]
        return weights_flash((t.name, t.elements, t.dtype, t.is_param) for t in consts).total_bytes

    @property
    def quant_params_bytes(self) -> int:
        """8 bytes per quantization channel of weights and activations (bias scales are derived)."""
        n = 0
        for t in self.tensors.values():
            if t.quant_channels and not (t.const and t.dtype == "int32"):
                n += t.quant_channels
        return n * QPARAM_BYTES_PER_CHANNEL


# -- shared by the readers ------------------------------------------------------------------------
def _nbytes(shape, dtype: str) -> int:
    return stored_bytes(math.prod(shape) if shape else 1, dtype)


def _finish(graph: Graph) -> Graph:
    """Mark parameter tensors, then fill per-op MACs, params, weight bytes and kernel sizes."""
    for op in graph.ops:
        for t in graph.consts(op.inputs):
            tt = graph.tensors[t]
            if is_parameter(tt.dtype, op.kind in MAC_KINDS):
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
