"""One small operator graph for .tflite, .onnx and .keras models.

:func:`load_graph` reads a model file into a :class:`Graph` (:mod:`.core`): operators in
execution order, each with the ids of the tensors it reads and writes, and every
tensor with its shape (batch fixed to 1), dtype, byte size and whether it is a
constant (a weight, in flash) or an activation (in RAM). One reader per format:

- **.tflite** (:mod:`.tflite`): int8 or float, read with the LiteRT interpreter;
- **.onnx** (:mod:`.onnx`): float or QDQ int8/int4, Q/DQ pairs folded as an int8 runtime runs them;
- **.keras** (:mod:`.keras`): one operator per layer, float32 tensors
  (:func:`~mcuzoo.analysis.graph.keras.graph_from_keras` for a model in memory).

How MACs, parameters and quantization parameters are counted: :mod:`.core`.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import ModelFileError
from .core import ALIAS_KINDS, MAC_KINDS, QPARAM_BYTES_PER_CHANNEL, Graph, Op, Tensor
from .keras import load_keras
from .onnx import load_onnx
from .tflite import load_tflite

__all__ = ["Tensor", "Op", "Graph", "load_graph", "MAC_KINDS", "ALIAS_KINDS", "QPARAM_BYTES_PER_CHANNEL"]

#: The reader of each model file suffix (each imports its format's library only when it reads).
READERS = {".tflite": load_tflite, ".onnx": load_onnx, ".keras": load_keras}


def load_graph(model_path: str | Path) -> Graph:
    """Read a .tflite, .onnx or .keras file; ModelFileError (one line) for anything wrong with it."""
    path = Path(model_path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ModelFileError(f"{path}: unknown model format '{suffix or path.name}' (expected .tflite, .onnx or .keras)")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e.strerror}") from None
    if size == 0:
        raise ModelFileError(f"{path} is empty")
    graph = READERS[suffix](path)
    if not graph.ops:
        raise ModelFileError(f"{path} has no operators")
    return graph
