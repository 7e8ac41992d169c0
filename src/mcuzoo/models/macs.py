"""Per-layer parameter and multiply-accumulate (MAC) counts of a Keras model.

MACs are counted per image (batch of one) for the layers that multiply weights:

- Conv1D/2D/3D: kh * kw * (cin / groups) * cout * H_out * W_out (the kernel
  shape times the output positions);
- DepthwiseConv1D/2D: kh * kw * C * depth_multiplier * H_out * W_out;
- SeparableConv1D/2D: the depthwise part plus the 1x1 pointwise part;
- Conv2DTranspose/Conv3DTranspose/Conv1DTranspose: kernel size times the input positions;
- Dense: in * out (times the positions when applied to a feature map).

Every other layer (BatchNormalization, activations, pooling, add, multiply,
concatenate, dropout, reshape...) counts 0 MACs. Nested models are flattened:
their layers appear with the name ``outer_layer/inner_layer``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LayerInfo", "model_summary", "total_macs"]


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`model_summary`.

    ``output_shape`` is the layer's output shape without the batch dimension,
    e.g. ``(14, 14, 16)``; ``params`` counts all weights (trainable and not,
    e.g. BatchNormalization moving statistics); ``macs`` is per image.
    """

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


def model_summary(model) -> list[LayerInfo]:
    """One :class:`LayerInfo` per layer of ``model`` (input layers left out), in model order."""
    rows: list[LayerInfo] = []
    _collect(model, "", rows)
    return rows


def total_macs(model) -> int:
    """Sum of the MACs of all layers of ``model`` for one image."""
    return sum(row.macs for row in model_summary(model))


def _collect(model, prefix: str, rows: list[LayerInfo]) -> None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            _collect(layer, f"{prefix}{layer.name}/", rows)
            continue
        in_shape = _shape(layer, "input")
        out_shape = _shape(layer, "output")
        rows.append(
            LayerInfo(
                name=f"{prefix}{layer.name}",
                kind=type(layer).__name__,
                output_shape=out_shape,
                params=int(layer.count_params()) if layer.built else 0,
                macs=_layer_macs(layer, in_shape, out_shape),
            )
        )


def _shape(layer, which: str) -> tuple:
    """The layer's input or output shape without the batch dimension; () if unknown.

    A layer with several inputs (Add, Concatenate...) gives the first one's shape.
    """
    try:
        tensor = getattr(layer, which)
    except (AttributeError, ValueError):  # not connected, or used at several places
        return ()
    if isinstance(tensor, (list, tuple)):
        if not tensor:
            return ()
        tensor = tensor[0]
    return tuple(tensor.shape[1:])


def _positions(shape: tuple) -> int:
    """Number of spatial positions of a (..., channels) shape: product of all but the last dim."""
    dims = shape[:-1]
    if any(d is None for d in dims):
        return 0  # unknown spatial size: cannot count
    return math.prod(dims) if dims else 1


def _size(weight) -> int:
    return math.prod(int(d) for d in weight.shape)


def _layer_macs(layer, in_shape: tuple, out_shape: tuple) -> int:
    import keras

    L = keras.layers
    if not layer.built or not out_shape:
        return 0
    # Order matters only for readability: none of these classes subclasses another in Keras 3.
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        positions = _positions(out_shape)
        return (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel)) * positions
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return _size(layer.kernel) * _positions(out_shape)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return _size(layer.kernel) * _positions(in_shape) if in_shape else 0
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return _size(layer.kernel) * _positions(out_shape)
    if isinstance(layer, L.Dense):
        return _size(layer.kernel) * _positions(out_shape)
    return 0
