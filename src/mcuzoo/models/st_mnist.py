"""ST MNIST v1: a depthwise-separable CNN for 28x28 MNIST-style images.

Reference: STMicroelectronics stm32ai-modelzoo, image_classification/st_mnist.

    conv1   Conv2D 16, 3x3, stride 2, same, BN, ReLU      14x14x16 (at 28x28)
    dwconv2 DepthwiseConv2D 3x3, stride 1, same, BN, ReLU 14x14x16
    conv3   Conv2D 32, 3x3, stride 1, same, BN, ReLU      14x14x32
    dwconv4 DepthwiseConv2D 3x3, stride 2, same, BN, ReLU 7x7x32
    conv5   Conv2D 64, 1x1, BN, ReLU                      7x7x64
    top     GlobalAveragePooling, Dropout 0.5, Dense softmax

36 classes: 10,372 parameters (10,052 trainable, 320 BN moving statistics).
All padding is "same", so any input size of at least 1x1 works.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import STM32_ZOO, ModelCard, check_build_args, register_model
from .counting import Tally

if TYPE_CHECKING:
    import keras

DEFAULT_DROPOUT = 0.5


def conv_bn_relu(x, filters, kernel_size, strides, name):
    """Conv2D (with bias) -> BatchNormalization -> ReLU."""
    from keras import layers

    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def dwconv_bn_relu(x, strides, name):
    """DepthwiseConv2D 3x3 (with bias) -> BatchNormalization -> ReLU."""
    from keras import layers

    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def count(input_shape, num_classes) -> tuple[int, int]:
    """(parameters, MACs) of :func:`st_mnist_v1`, without building it (see :mod:`mcuzoo.models.counting`)."""
    input_shape, num_classes, _ = check_build_args("st_mnist_v1", input_shape, num_classes, None)
    t = Tally(input_shape)
    t.conv(16, 3, 2).batch_norm().depthwise(3, 1).batch_norm().conv(32, 3, 1).batch_norm()
    t.depthwise(3, 2).batch_norm().conv(64, 1, 1).batch_norm().global_pool().dense(num_classes)
    return t.counts()


@register_model(
    "st_mnist_v1",
    description="ST MNIST v1: depthwise-separable CNN for 28x28 grayscale glyphs (10,372 params at 36 classes)",
    default_input_shape=(28, 28, 1),
    default_rescale=1 / 127.5,
    default_offset=-1.0,
    default_dropout=DEFAULT_DROPOUT,
    card=ModelCard(
        title="ST MNIST v1",
        description=(
            "ST MNIST v1 is a small convolutional network designed by STMicroelectronics for MNIST-type datasets "
            "(digit recognition, alphabet recognition, Fashion-MNIST, ...). It is built from depthwise separable "
            "convolutions: a strided 3x3 convolution (16 filters), a 3x3 depthwise convolution, a 3x3 convolution "
            "(32 filters), a strided 3x3 depthwise convolution and a 1x1 convolution (64 filters), each followed by "
            "batch normalisation and ReLU, then global average pooling, dropout and a softmax classifier. "
            "It is meant for 28 x 28 grey-scale images, the standard MNIST resolution."
        ),
        paper=None,
        origin=f"{STM32_ZOO}/tree/main/image_classification/st_mnist",
    ),
    counter=count,
)
def st_mnist_v1(input_shape: tuple[int, int, int], num_classes: int, dropout: float | None = None) -> keras.Model:
    """Build ST MNIST v1 for ``input_shape`` (H, W, C) and ``num_classes`` (a ``keras.Model``)."""
    import keras
    from keras import layers

    input_shape, num_classes, dropout = check_build_args("st_mnist_v1", input_shape, num_classes, dropout)
    if dropout is None:
        dropout = DEFAULT_DROPOUT

    inputs = keras.Input(shape=input_shape, name="input")
    x = conv_bn_relu(inputs, 16, 3, 2, name="conv1")
    x = dwconv_bn_relu(x, 1, name="dwconv2")
    x = conv_bn_relu(x, 32, 3, 1, name="conv3")
    x = dwconv_bn_relu(x, 2, name="dwconv4")
    x = conv_bn_relu(x, 64, 1, 1, name="conv5")

    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="top_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="st_mnist_v1")
