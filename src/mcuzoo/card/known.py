"""What the cards say about each architecture (the datasets' titles, details and references: :mod:`mcuzoo.layouts`)."""
from __future__ import annotations

__all__ = ["MODELS"]

_ZOO = "https://github.com/STMicroelectronics/stm32ai-modelzoo"

MODELS = {
    "st_mnist_v1": {
        "title": "ST MNIST v1",
        "description": (
            "ST MNIST v1 is a small convolutional network designed by STMicroelectronics for MNIST-type datasets "
            "(digit recognition, alphabet recognition, Fashion-MNIST, ...). It is built from depthwise separable "
            "convolutions: a strided 3x3 convolution (16 filters), a 3x3 depthwise convolution, a 3x3 convolution "
            "(32 filters), a strided 3x3 depthwise convolution and a 1x1 convolution (64 filters), each followed by "
            "batch normalisation and ReLU, then global average pooling, dropout and a softmax classifier. "
            "It is meant for 28 x 28 grey-scale images, the standard MNIST resolution."
        ),
        "paper": None,
        "origin": f"{_ZOO}/tree/main/image_classification/st_mnist",
    },
    "st_efficientnet_lc_v1": {
        "title": "ST EfficientNet LC v1",
        "description": (
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
        "paper": "https://arxiv.org/pdf/1905.11946.pdf",
        "origin": f"{_ZOO}/tree/main/image_classification/efficientnet",
    },
    "squeezenet_v1_0": {
        "title": "SqueezeNet v1.0",
        "description": (
            "SqueezeNet is a convolutional neural network that reduces the number of parameters with design "
            "strategies such as fire modules, which 'squeeze' the channels with 1x1 convolutions before expanding "
            "them again with parallel 1x1 and 3x3 convolutions. SqueezeNet v1.0 reaches AlexNet-level accuracy "
            "with 50x fewer parameters. This is the variant of the STM32 model zoo (128 x 128 input, batch "
            "normalisation after the squeeze convolutions, no fire8), quantized to int8."
        ),
        "paper": "https://arxiv.org/pdf/1602.07360.pdf",
        "origin": (f"the STM32 model zoo variant ({_ZOO}/tree/main/image_classification/squeezenetv1.0) of "
                   "https://github.com/forresti/SqueezeNet"),
    },
}
