"""SqueezeNet v1.0, the STMicroelectronics model-zoo variant.

Reference: Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size" (https://arxiv.org/abs/1602.07360),
https://github.com/forresti/SqueezeNet. The ST variant has no fire8, puts a
BatchNormalization after the ReLU of every squeeze conv, and ends in
Dropout -> 1x1 conv to the classes -> ReLU -> BN -> GAP -> softmax.

At 128x128: conv1 61x61x96, pool1 30x30, pool2 14x14, pool3 6x6, fire9 6x6x512.
Parameters: 541,849 (5 classes), 559,427 (39), 591,481 (101).

The 7x7 conv and the three 3x3/2 max pools are "valid", so an input must be
at least 35x35 (smaller inputs raise ConfigError).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from . import STM32_ZOO, ModelCard, check_build_args, register_model
from .counting import Tally

if TYPE_CHECKING:
    import keras

DEFAULT_DROPOUT = 0.5

# (name, squeeze filters, expand filters) per stage; a 3x3/2 max pool precedes each stage.
FIRE_STAGES = [
    [("fire2", 16, 64), ("fire3", 16, 64), ("fire4", 32, 128)],
    [("fire5", 32, 128), ("fire6", 48, 192), ("fire7", 48, 192)],
    [("fire9", 64, 256)],  # no fire8 in this variant
]


def _valid_out(size, kernel, stride):
    """Output size of a "valid" conv or pool; < 1 when the input is too small."""
    return (size - kernel) // stride + 1 if size >= kernel else 0


def feature_sizes(size):
    """Spatial size after conv1, pool1, pool2 and pool3 for one input dimension."""
    conv1 = _valid_out(size, 7, 2)
    pool1 = _valid_out(conv1, 3, 2)
    pool2 = _valid_out(pool1, 3, 2)
    pool3 = _valid_out(pool2, 3, 2)
    return conv1, pool1, pool2, pool3


MIN_INPUT_SIZE = next(s for s in range(1, 1000) if feature_sizes(s)[-1] >= 1)  # 35


def fire_module(x, squeeze, expand, name):
    """Fire module: 1x1 squeeze conv, ReLU, BN -> concat(1x1 expand conv + ReLU, 3x3 expand conv + ReLU)."""
    from keras import layers

    x = layers.Conv2D(squeeze, 1, padding="valid", name=f"{name}_squeeze")(x)
    x = layers.ReLU(name=f"{name}_squeeze_relu")(x)
    x = layers.BatchNormalization(name=f"{name}_squeeze_bn")(x)

    left = layers.Conv2D(expand, 1, padding="valid", name=f"{name}_expand1x1")(x)
    left = layers.ReLU(name=f"{name}_expand1x1_relu")(left)

    right = layers.Conv2D(expand, 3, padding="same", name=f"{name}_expand3x3")(x)
    right = layers.ReLU(name=f"{name}_expand3x3_relu")(right)

    return layers.Concatenate(axis=-1, name=f"{name}_concat")([left, right])


def check_input_size(h: int, w: int) -> None:
    """ConfigError when an input is smaller than the valid 7x7 conv and the three 3x3/2 max pools allow."""
    if min(h, w) < MIN_INPUT_SIZE:
        raise ConfigError(
            f"squeezenet_v1_0: input {h}x{w} is too small: its valid 7x7 conv and three 3x3/2 max pools "
            f"need at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}"
        )


def count(input_shape, num_classes) -> tuple[int, int]:
    """(parameters, MACs) of :func:`squeezenet_v1_0`, without building it (see :mod:`mcuzoo.models.counting`)."""
    input_shape, num_classes, _ = check_build_args("squeezenet_v1_0", input_shape, num_classes, None)
    check_input_size(input_shape[0], input_shape[1])
    t = Tally(input_shape).conv(96, 7, 2, "valid")
    for stage in FIRE_STAGES:
        t.pool(3, 2, "valid")
        for _, squeeze, expand in stage:
            t.conv(squeeze, 1, 1, "valid").batch_norm()
            t.add(9 * squeeze * expand + expand, 9 * squeeze * expand * t.h * t.w)  # the 3x3 expand, beside
            t.conv(expand, 1, 1, "valid")  # the 1x1 expand
            t.c = 2 * expand  # concatenated
    t.conv(num_classes, 1, 1, "valid").batch_norm().global_pool()
    return t.counts()


@register_model(
    "squeezenet_v1_0",
    description="SqueezeNet v1.0, ST variant: fire modules with BN, no fire8 (559,427 params at 39 classes)",
    default_input_shape=(128, 128, 3),
    default_rescale=1 / 255,
    default_offset=0.0,
    default_dropout=DEFAULT_DROPOUT,
    card=ModelCard(
        title="SqueezeNet v1.0",
        description=(
            "SqueezeNet is a convolutional neural network that reduces the number of parameters with design "
            "strategies such as fire modules, which 'squeeze' the channels with 1x1 convolutions before expanding "
            "them again with parallel 1x1 and 3x3 convolutions. SqueezeNet v1.0 reaches AlexNet-level accuracy "
            "with 50x fewer parameters. This is the variant of the STM32 model zoo (128 x 128 input, batch "
            "normalisation after the squeeze convolutions, no fire8), quantized to int8."
        ),
        paper="https://arxiv.org/pdf/1602.07360.pdf",
        origin=(f"the STM32 model zoo variant ({STM32_ZOO}/tree/main/image_classification/squeezenetv1.0) of "
                   "https://github.com/forresti/SqueezeNet"),
    ),
    counter=count,
)
def squeezenet_v1_0(input_shape: tuple[int, int, int], num_classes: int, dropout: float | None = None) -> keras.Model:
    """Build SqueezeNet v1.0 (ST variant) for ``input_shape`` (H, W, C) and ``num_classes`` (a ``keras.Model``)."""
    import keras
    from keras import layers

    input_shape, num_classes, dropout = check_build_args("squeezenet_v1_0", input_shape, num_classes, dropout)
    if dropout is None:
        dropout = DEFAULT_DROPOUT
    check_input_size(input_shape[0], input_shape[1])

    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(96, 7, strides=2, padding="valid", name="conv1")(inputs)
    x = layers.ReLU(name="conv1_relu")(x)
    for i, stage in enumerate(FIRE_STAGES, start=1):
        x = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"pool{i}")(x)
        for name, squeeze, expand in stage:
            x = fire_module(x, squeeze, expand, name=name)

    x = layers.Dropout(dropout, name="top_dropout")(x)
    x = layers.Conv2D(num_classes, 1, padding="valid", name="conv10")(x)
    x = layers.ReLU(name="conv10_relu")(x)
    x = layers.BatchNormalization(name="conv10_bn")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="squeezenet_v1_0")
