"""The model registry: every architecture mcuzoo can build, by name.

Each architecture lives in its own module as one builder function, registered
with :func:`register_model` (in the style of timm)::

    @register_model("st_mnist_v1", description="...", default_input_shape=(28, 28, 1),
                    default_rescale=1 / 127.5, default_offset=-1.0)
    def st_mnist_v1(input_shape, num_classes, dropout=None) -> keras.Model: ...

Builders take float input (the pipeline applies ``pixel * rescale + offset``)
and end in a softmax over ``num_classes``. Every problem with the arguments
(unknown name, impossible input shape, too few classes, bad dropout) is raised
as :class:`mcuzoo.errors.ConfigError` with a one-line message before any Keras
layer is built.

Public API::

    build_model(name, input_shape, num_classes, dropout=None) -> keras.Model
    count_model(name, input_shape, num_classes) -> (parameters, MACs)   (no Keras graph, no TensorFlow)
    list_models() -> list[ModelSpec]
    get_model_spec(name) -> ModelSpec
    model_summary(model) -> list[LayerInfo]
    total_macs(model) -> int
    load_keras_model(path) -> keras.Model   (a .keras file, safe mode on)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, cast

from ..errors import ConfigError

if TYPE_CHECKING:
    import keras

__all__ = [
    "ModelSpec",
    "ModelCard",
    "LayerInfo",
    "register_model",
    "build_model",
    "count_model",
    "list_models",
    "get_model_spec",
    "model_summary",
    "total_macs",
    "check_build_args",
    "load_keras_model",
]


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    ``default_rescale`` / ``default_offset`` are the preprocessing the model was
    trained with on its card: ``float_input = uint8_pixel * rescale + offset``.
    ``builder(input_shape, num_classes, dropout=None)`` returns an uncompiled
    ``keras.Model``; ``default_dropout`` is the top dropout it uses when
    ``dropout`` is None. ``counter(input_shape, num_classes)`` returns the model's
    (parameters, MACs) from its layer arithmetic, without Keras (see :mod:`.counting`).
    """

    name: str
    description: str
    default_input_shape: tuple[int, int, int]
    default_rescale: float
    default_offset: float
    builder: Callable
    default_dropout: float = 0.0
    card: "ModelCard | None" = None
    counter: Callable | None = None


@dataclass(frozen=True)
class ModelCard:
    """What a model card says about an architecture: its title, a description (Markdown), the paper and where
    the architecture comes from."""

    title: str
    description: str
    paper: str | None
    origin: str


#: The STM32 model zoo, where the cards' architectures come from.
STM32_ZOO = "https://github.com/STMicroelectronics/stm32ai-modelzoo"

_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    description: str,
    default_input_shape: tuple[int, int, int],
    default_rescale: float,
    default_offset: float,
    default_dropout: float = 0.0,
    card: ModelCard | None = None,
    counter: Callable | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator that registers a builder function under ``name``."""

    def decorator(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            description=description,
            default_input_shape=cast("tuple[int, int, int]", tuple(default_input_shape)),
            default_rescale=float(default_rescale),
            default_offset=float(default_offset),
            builder=fn,
            default_dropout=float(default_dropout),
            card=card,
            counter=counter,
        )
        return fn

    return decorator


def _registry() -> dict[str, ModelSpec]:
    """Every registered model: the builder modules (which import Keras) are imported on the first call, so that
    importing :mod:`mcuzoo.models` (e.g. for :mod:`.runner` running a .tflite) does not import TensorFlow."""
    from . import efficientnet_lc, squeezenet, st_mnist  # noqa: F401 - they register themselves

    return _REGISTRY


def list_models() -> list[ModelSpec]:
    """All registered models, sorted by name."""
    registry = _registry()
    return [registry[n] for n in sorted(registry)]


def get_model_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; ConfigError naming the known models if unknown."""
    try:
        return _registry()[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown model {name!r} (known: {known})") from None


def check_build_args(model: str, input_shape, num_classes, dropout) -> tuple[tuple[int, int, int], int, float | None]:
    """Validate the arguments shared by every builder; return them normalised.

    Raises ConfigError (one line, naming the model and the problem) for an
    input shape that is not (height, width, channels) of positive integers,
    channels other than 1 or 3, fewer than 2 classes or a dropout outside [0, 1).
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ConfigError(f"{model}: input_shape must be (height, width, channels), got {input_shape!r}") from None
    if len(shape) != 3 or not all(_is_int(v) for v in shape):
        raise ConfigError(f"{model}: input_shape must be (height, width, channels) integers, got {input_shape!r}")
    h, w, c = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ConfigError(f"{model}: input height and width must be positive, got {h}x{w}")
    if c not in (1, 3):
        raise ConfigError(f"{model}: input channels must be 1 (grayscale) or 3 (RGB), got {c}")
    if not _is_int(num_classes) or int(num_classes) < 2:
        raise ConfigError(f"{model}: num_classes must be an integer >= 2, got {num_classes!r}")
    if dropout is not None:
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"{model}: dropout must be in [0, 1), got {dropout!r}")
        dropout = float(dropout)
    return (h, w, c), int(num_classes), dropout


def _is_int(v) -> bool:
    import numbers

    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int, dropout: float | None = None,
                batch_norm_momentum: float | None = None) -> keras.Model:
    """Build registered model ``name`` for ``input_shape`` (H, W, C) and ``num_classes``.

    ``dropout`` overrides the model's top dropout (None: the model's default);
    ``batch_norm_momentum`` that of every BatchNormalization layer (None: Keras' 0.99).
    Returns an uncompiled ``keras.Model`` with output shape (None, num_classes).
    """
    spec = get_model_spec(name)
    input_shape, num_classes, dropout = check_build_args(name, input_shape, num_classes, dropout)
    if batch_norm_momentum is not None and not 0.0 <= float(batch_norm_momentum) < 1.0:
        raise ConfigError(f"{name}: batch_norm_momentum must be in [0, 1), got {batch_norm_momentum!r}")
    model = spec.builder(input_shape, num_classes, dropout=dropout)
    if batch_norm_momentum is not None:
        import keras

        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(batch_norm_momentum)  # read at every training step; saved in the config
    return model


def count_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> tuple[int, int]:
    """(parameters, MACs per image) of model ``name``, as ``build_model(...).count_params()`` and
    :func:`total_macs` give them: from the model's counter when it has one (no Keras graph, no
    TensorFlow import), else by building it. ConfigError for impossible arguments, as build_model."""
    spec = get_model_spec(name)
    input_shape, num_classes, _ = check_build_args(name, input_shape, num_classes, None)
    if spec.counter is not None:
        params, macs = spec.counter(input_shape, num_classes)
        return int(params), int(macs)
    from .macs import total_macs

    model = spec.builder(input_shape, num_classes)
    return int(model.count_params()), int(total_macs(model))


# The builder modules import register_model and check_build_args from this module (see _registry); none of
# them imports Keras before a model is built, so listing and counting the registry does not import TensorFlow.
# The MAC counter imports Keras, so it is imported when first used.
from .loading import load_keras_model  # noqa: E402

if TYPE_CHECKING:
    from .macs import LayerInfo, model_summary, total_macs


def __getattr__(name: str) -> Any:
    if name in ("LayerInfo", "model_summary", "total_macs"):
        from . import macs

        return getattr(macs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
