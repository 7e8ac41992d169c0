"""mcuzoo: tiny image classifiers from a dataset to an int8 model that fits a microcontroller."""
from __future__ import annotations

__version__ = "0.1.0"

# The Python API runs as the CLI does, by construction: the same environment for TensorFlow (oneDNN off, so
# that results are the same numbers; its C++ logging quiet) and the same warning filters, set here, before
# anything imports TensorFlow. The CLI (mcuzoo.cli) is inside this package, so it gets them from here too.
from .console import quiet_tensorflow as _quiet_tensorflow  # noqa: E402

_quiet_tensorflow()

__all__ = ["__version__", "build_model", "list_models", "load_config", "run"]


def __getattr__(name):  # lazy: importing mcuzoo must not import TensorFlow
    if name in ("build_model", "list_models"):
        from . import models

        return getattr(models, name)
    if name == "load_config":
        from .config import load_config

        return load_config
    if name == "run":
        from .pipeline import run

        return run
    raise AttributeError(f"module 'mcuzoo' has no attribute {name!r}")
