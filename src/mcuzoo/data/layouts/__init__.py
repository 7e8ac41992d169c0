"""One module per dataset layout, each registered in :mod:`mcuzoo.layouts` (which names the module).

Each has ``load`` (a run's dataset), ``detect`` and ``load_eval`` (``mcuzoo evaluate MODEL DATA``); see
:mod:`mcuzoo.layouts` for their signatures and :mod:`mcuzoo.data.pools` for what they return.
A new layout's module is also imported here (:func:`reader` finds it by its registered name).
"""
from __future__ import annotations

import sys
from types import ModuleType

from ...errors import DataError
from ...layouts import Layout
from . import builtin, emnist_byclass, folder, food101  # noqa: F401 - every layout module, imported once here

__all__ = ["reader"]


def reader(layout: Layout) -> ModuleType:
    """The module that reads ``layout`` (its ``load``, ``detect`` and ``load_eval``); mcuzoo imports no module by
    a name read at run time, so a new layout's module is imported above."""
    module = sys.modules.get(layout.module)
    if module is None:
        raise DataError(f"dataset layout '{layout.name}': its module {layout.module} is not imported "
                        "(import it in mcuzoo/data/layouts/__init__.py)")
    return module
