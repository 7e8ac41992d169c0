"""Parameters and MACs of a registered architecture from its layer arithmetic, without Keras.

``mcuzoo models`` lists every architecture with its parameter and MAC counts; building
the Keras graphs for that takes seconds (and importing TensorFlow more). Each builder
module therefore also registers a *counter*: the same layer sequence written with
:class:`Tally`, which follows the feature-map shape and adds up what the Keras layers
hold (every weight, trainable or not, as ``keras.Model.count_params`` counts them) and
the MACs as :func:`mcuzoo.models.macs.total_macs` counts them (kernel size times output
positions; 0 for batch norm, pooling, activations). tests/test_models.py checks every
counter against the Keras model over many input shapes and class counts.
"""
from __future__ import annotations

import math


def conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of a conv or pool along one axis ("same": ceil(n / s); "valid": floor((n - k) / s) + 1)."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1 if size >= kernel else 0


class Tally:
    """A feature map's shape (H, W, C) and the parameters and MACs of the layers applied so far."""

    def __init__(self, input_shape: tuple[int, int, int]):
        self.h, self.w, self.c = (int(v) for v in input_shape)
        self.params = 0
        self.macs = 0

    def conv(self, filters: int, kernel: int, stride: int = 1, padding: str = "same", bias: bool = True) -> "Tally":
        self.h, self.w = conv_out(self.h, kernel, stride, padding), conv_out(self.w, kernel, stride, padding)
        size = kernel * kernel * self.c * filters
        self.params += size + (filters if bias else 0)
        self.macs += size * self.h * self.w
        self.c = filters
        return self

    def depthwise(self, kernel: int, stride: int = 1, padding: str = "same", bias: bool = True) -> "Tally":
        self.h, self.w = conv_out(self.h, kernel, stride, padding), conv_out(self.w, kernel, stride, padding)
        size = kernel * kernel * self.c
        self.params += size + (self.c if bias else 0)
        self.macs += size * self.h * self.w
        return self

    def batch_norm(self) -> "Tally":
        self.params += 4 * self.c  # gamma, beta, moving mean, moving variance
        return self

    def pool(self, kernel: int, stride: int, padding: str = "valid") -> "Tally":
        self.h, self.w = conv_out(self.h, kernel, stride, padding), conv_out(self.w, kernel, stride, padding)
        return self

    def global_pool(self) -> "Tally":
        self.h = self.w = 1
        return self

    def dense(self, units: int) -> "Tally":
        """A Dense layer on a pooled (1 x 1) feature map: c x units weights and MACs, plus the biases."""
        assert (self.h, self.w) == (1, 1), "dense() follows global_pool()"
        self.params += self.c * units + units
        self.macs += self.c * units
        self.c = units
        return self

    def add(self, params: int, macs: int) -> "Tally":
        """Count a branch computed apart (e.g. a squeeze-excitation or a fire module's second expand)."""
        self.params += int(params)
        self.macs += int(macs)
        return self

    def counts(self) -> tuple[int, int]:
        return self.params, self.macs
