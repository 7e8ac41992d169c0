"""ST EfficientNet LC v1 ("low complexity"): EfficientNet-B0 made small and int8-friendly.

Reference: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks" (https://arxiv.org/abs/1905.11946), in the layout of Keras'
``keras/src/applications/efficientnet.py``, with the changes of the
STMicroelectronics model zoo:

- relu6 everywhere instead of swish;
- width coefficient 0.45, depth coefficient 1.0, channel divisor 8;
- expansion factor 3 (1 in the first stage);
- squeeze-excitation width 0.25 x the block's input channels, and the SE
  logits clipped to [-4, 4] (:class:`~mcuzoo.models.layers.ClipLogits`) right
  before the sigmoid;
- drop-connect 0.2 x block_index / 16 on residual branches only.

Stem 3x3/2 -> 16, 16 MBConv blocks in 7 stages (outputs 8, 16, 24, 40, 48, 88,
144 channels), head 1x1 -> 576, GAP, Dropout, Dense softmax. At 224x224 the
stage outputs are 112, 56, 28, 14, 14, 7, 7 pixels. Parameters: 516,153 (5
classes), 535,771 (39), 571,545 (101). All padding is "same", so any input
size of at least 1x1 works.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

from . import STM32_ZOO, ModelCard, check_build_args, register_model
from .counting import Tally

if TYPE_CHECKING:
    import keras

WIDTH_COEFFICIENT = 0.45
DEPTH_COEFFICIENT = 1.0
DEPTH_DIVISOR = 8
DROP_CONNECT_RATE = 0.2
SE_CLIP = 4.0
DEFAULT_DROPOUT = 0.35  # top dropout of the Food-101 reference training (0.45 for Plant)

# EfficientNet-B0 stages with the expansion factor of LC v1 (3; 1 in stage 1).
# Filters are B0's, before width scaling.
DEFAULT_BLOCKS_ARGS = [
    {"kernel_size": 3, "repeats": 1, "filters_in": 32, "filters_out": 16, "expand_ratio": 1, "strides": 1, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 2, "filters_in": 16, "filters_out": 24, "expand_ratio": 3, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 5, "repeats": 2, "filters_in": 24, "filters_out": 40, "expand_ratio": 3, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 3, "filters_in": 40, "filters_out": 80, "expand_ratio": 3, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 5, "repeats": 3, "filters_in": 80, "filters_out": 112, "expand_ratio": 3, "strides": 1, "se_ratio": 0.25},
    {"kernel_size": 5, "repeats": 4, "filters_in": 112, "filters_out": 192, "expand_ratio": 3, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 1, "filters_in": 192, "filters_out": 320, "expand_ratio": 3, "strides": 1, "se_ratio": 0.25},
]

CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def round_filters(filters, width_coefficient=WIDTH_COEFFICIENT, divisor=DEPTH_DIVISOR):
    """Scale a channel count by the width coefficient, rounded to a multiple of ``divisor``."""
    filters *= width_coefficient
    new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * filters:  # do not round down by more than 10 %
        new_filters += divisor
    return int(new_filters)


def round_repeats(repeats, depth_coefficient=DEPTH_COEFFICIENT):
    """Scale a stage's block count by the depth coefficient (rounding up)."""
    return int(math.ceil(depth_coefficient * repeats))


def squeeze_excite(x, filters_in, filters, name):
    """SE: GAP -> 1x1 conv to 0.25 x input channels, relu6 -> 1x1 conv back, clip [-4, 4], sigmoid -> scale ``x``."""
    from keras import layers

    from .layers import ClipLogits

    filters_se = max(1, int(filters_in * 0.25))
    se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}se_squeeze")(x)
    se = layers.Conv2D(
        filters_se, 1, padding="same", kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_reduce"
    )(se)
    se = layers.ReLU(6.0, name=f"{name}se_reduce_relu6")(se)
    se = layers.Conv2D(
        filters, 1, padding="same", kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_expand"
    )(se)
    se = ClipLogits(min=-SE_CLIP, max=SE_CLIP, name=f"{name}se_clip")(se)
    se = layers.Activation("sigmoid", name=f"{name}se_sigmoid")(se)
    return layers.Multiply(name=f"{name}se_excite")([x, se])


def mbconv_block(x, filters_in, filters_out, kernel_size, strides, expand_ratio, drop_rate, name):
    """Mobile inverted bottleneck: [expand 1x1] -> depthwise kxk -> SE -> project 1x1 [-> drop-connect + add]."""
    from keras import layers

    inputs = x
    filters = filters_in * expand_ratio

    if expand_ratio != 1:
        x = layers.Conv2D(
            filters, 1, padding="same", kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}expand_conv"
        )(x)
        x = layers.BatchNormalization(name=f"{name}expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}expand_relu6")(x)

    x = layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding="same",
        depthwise_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{name}dwconv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}bn")(x)
    x = layers.ReLU(6.0, name=f"{name}relu6")(x)

    x = squeeze_excite(x, filters_in, filters, name=name)

    x = layers.Conv2D(
        filters_out, 1, padding="same", kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}project_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}project_bn")(x)

    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


def count(input_shape, num_classes) -> tuple[int, int]:
    """(parameters, MACs) of :func:`st_efficientnet_lc_v1`, without building it (see :mod:`mcuzoo.models.counting`)."""
    input_shape, num_classes, _ = check_build_args("st_efficientnet_lc_v1", input_shape, num_classes, None)
    t = Tally(input_shape).conv(round_filters(32), 3, 2).batch_norm()
    for args in DEFAULT_BLOCKS_ARGS:
        filters_in, filters_out = round_filters(args["filters_in"]), round_filters(args["filters_out"])
        for j in range(round_repeats(args["repeats"])):
            block_in = filters_in if j == 0 else filters_out
            filters = block_in * args["expand_ratio"]
            if args["expand_ratio"] != 1:
                t.conv(filters, 1).batch_norm()
            t.depthwise(int(args["kernel_size"]), int(args["strides"]) if j == 0 else 1).batch_norm()
            se = max(1, int(block_in * 0.25))  # squeeze-excitation: two 1x1 convs on the pooled map
            t.add(filters * se + se + se * filters + filters, 2 * filters * se)
            t.conv(filters_out, 1).batch_norm()
    t.conv(round_filters(1280), 1).batch_norm().global_pool().dense(num_classes)
    return t.counts()


@register_model(
    "st_efficientnet_lc_v1",
    description="ST EfficientNet LC v1: EfficientNet-B0 with relu6, width 0.45, expansion 3 and clipped SE "
    "(516,153 params at 5 classes)",
    default_input_shape=(128, 128, 3),
    default_rescale=1 / 255,
    default_offset=0.0,
    default_dropout=DEFAULT_DROPOUT,
    card=ModelCard(
        title="ST EfficientNet LC v1",
        description=(
            "EfficientNet was introduced in [this paper](https://arxiv.org/pdf/1905.11946.pdf): its authors scale "
            "depth, width and resolution together with a compound coefficient and, starting from a topology found "
            "by neural architecture search (B0), derive the variants B1 to B7. Its building blocks are the mobile "
            "inverted bottleneck MBConv (Sandler et al., 2018; Tan et al., 2019) with squeeze-and-excitation "
            "(Hu et al., 2018).\n\n"
            "B0 is already too large for STM32 microcontrollers, so STMicroelectronics derived a low-complexity "
            "(LC) variant aiming at about 500 kB of RAM and weights: 'swish' is replaced by 'relu6', the width "
            "coefficient is 0.45 and the expansion factor 3, and the squeeze-and-excitation logits are clipped to "
            "[-4, 4] before the sigmoid, which fixes the activation quantization problems of the original topology. "
            "In mcuzoo the clip is a named, serialisable Keras layer (`mcuzoo>ClipLogits`) rather than a Lambda, so "
            "saved models load with Keras' safe mode on."
        ),
        paper="https://arxiv.org/pdf/1905.11946.pdf",
        origin=f"{STM32_ZOO}/tree/main/image_classification/efficientnet",
    ),
    counter=count,
)
def st_efficientnet_lc_v1(input_shape: tuple[int, int, int], num_classes: int, dropout: float | None = None) -> keras.Model:
    """Build ST EfficientNet LC v1 for ``input_shape`` (H, W, C) and ``num_classes`` (a ``keras.Model``)."""
    import keras
    from keras import layers

    input_shape, num_classes, dropout = check_build_args("st_efficientnet_lc_v1", input_shape, num_classes, dropout)
    if dropout is None:
        dropout = DEFAULT_DROPOUT

    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(
        round_filters(32),
        3,
        strides=2,
        padding="same",
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name="stem_conv",
    )(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)

    blocks_args = copy.deepcopy(DEFAULT_BLOCKS_ARGS)
    num_blocks = float(sum(round_repeats(args["repeats"]) for args in blocks_args))
    b = 0
    for i, args in enumerate(blocks_args):
        filters_in = round_filters(args["filters_in"])
        filters_out = round_filters(args["filters_out"])
        for j in range(round_repeats(args["repeats"])):
            x = mbconv_block(
                x,
                filters_in=filters_in if j == 0 else filters_out,
                filters_out=filters_out,
                kernel_size=args["kernel_size"],
                strides=args["strides"] if j == 0 else 1,
                expand_ratio=args["expand_ratio"],
                drop_rate=DROP_CONNECT_RATE * b / num_blocks,
                name=f"block{i + 1}{chr(j + 97)}_",
            )
            b += 1

    x = layers.Conv2D(
        round_filters(1280),
        1,
        padding="same",
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name="top_conv",
    )(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    x = layers.ReLU(6.0, name="top_relu6")(x)

    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="top_dropout")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", kernel_initializer=DENSE_KERNEL_INITIALIZER, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name="st_efficientnet_lc_v1")
