"""Custom Keras layers used by the mcuzoo models.

Every custom layer is registered as serialisable under the ``mcuzoo`` package,
so a saved ``.keras`` model reloads with ``keras.saving.load_model(path,
safe_mode=True)`` once :mod:`mcuzoo.models` is imported. No Lambda layers.
"""
from __future__ import annotations

import keras

__all__ = ["ClipLogits"]


@keras.saving.register_keras_serializable(package="mcuzoo")
class ClipLogits(keras.layers.Layer):
    """Clip values elementwise to ``[min, max]``.

    This is the "clipping lambda" of ST EfficientNet LC: it bounds the
    squeeze-excitation logits to [-4, 4] right before the sigmoid, so that the
    int8 quantisation of those activations keeps a useful range.
    """

    def __init__(self, min: float = -4.0, max: float = 4.0, **kwargs):  # noqa: A002 - names as on the card
        super().__init__(**kwargs)
        if not float(min) < float(max):
            raise ValueError(f"ClipLogits needs min < max, got min={min}, max={max}")
        self.min = float(min)
        self.max = float(max)

    def call(self, inputs):
        return keras.ops.clip(inputs, self.min, self.max)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"min": self.min, "max": self.max})
        return config
