"""Weights flash: the one definition of the flash a model's constants take.

Both counters use it: :attr:`mcuzoo.analysis.graph.Graph.weights_bytes` (any
.tflite, .onnx or .keras graph: ``mcuzoo analyze``, the cards' "weights flash")
and :func:`mcuzoo.quantization.onnx_qdq.weights_flash` (ONNX QDQ models, with
the int4 / int8 breakdown the mixed search names its file after). Each reads
its format and hands every constant tensor here once.

**Counted**, every constant tensor an operator reads, once, at its stored width
(:func:`stored_bytes`), as the model's flatbuffer holds it in flash, where TFLM
reads it in place:

- weights at their bit width: int8 one byte, int4 packed two per byte (rounded
  up per tensor), float32 four bytes (a float model, a constant left unquantized);
- biases: int32, four bytes each;
- the integer constants that only configure an operator (reshape shapes,
  reduction axes, paddings), at the width the file stores them (int32 in a
  .tflite, int64 in ONNX): :attr:`WeightsFlash.config_bytes`, a few bytes to a
  few hundred.

**Not counted**: quantization parameters. The float32 scales and the zero points
of weights and activations are counted apart (``quant_params_bytes`` of
:mod:`mcuzoo.analysis`): :data:`QPARAM_BYTES_PER_CHANNEL` bytes per quantization
channel of every quantized weight and activation tensor, biases left out (their
scale is the input scale times the weight scale, which runtimes derive). Nor the
file's structure (operator list, tensor names and shapes). This is the STM32
model zoo cards' "weights flash", which ``mcuzoo analyze`` reproduces on the seed
models (BENCHMARKS.md); a board's whole flash budget is weights flash plus the
quantization parameters plus the runtime's code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

#: Bytes counted per quantization channel: float32 scale + int32 zero point.
QPARAM_BYTES_PER_CHANNEL = 8

_BITS = {"int4": 4, "uint4": 4, "bool": 8, "float8": 8, "bfloat16": 16}  # those numpy has no itemsize for
_QUANTIZED = {"int4": "int4", "uint4": "int4", "int8": "int8", "uint8": "int8", "int32": "int32"}


def dtype_bits(dtype: str) -> int:
    """Bits per element of a dtype name (numpy's, or ``int4``/``uint4``/``float8``/``bfloat16``)."""
    if dtype in _BITS:
        return _BITS[dtype]
    import numpy as np

    return int(np.dtype(dtype).itemsize) * 8


def stored_bytes(elements: int, dtype: str) -> int:
    """Bytes of a tensor of ``elements`` at its stored width: ``ceil(elements * bits / 8)`` (int4 packs two a byte)."""
    return (int(elements) * dtype_bits(dtype) + 7) // 8


def is_parameter(dtype: str, read_by_mac: bool) -> bool:
    """A weight or bias, not a constant that only configures an operator: any constant a MAC operator (convolution,
    fully connected) reads, and any other that is not an int32 / int64 / bool (shapes, axes, paddings, masks)."""
    return read_by_mac or dtype not in ("int32", "int64", "bool")


@dataclass
class WeightsFlash:
    """A model's weights flash (see the module doc), with the parameters by storage type."""

    int4_params: int = 0
    int8_params: int = 0
    int32_params: int = 0       # biases
    float_params: int = 0       # float constants (a float model's weights, constants left unquantized)
    other_params: int = 0       # 16-bit and other parameters
    weight_bytes: int = 0       # the parameters at their stored width (int4 packed two per byte)
    config_bytes: int = 0       # integer constants that only configure an operator (shapes, axes, paddings)
    total_bytes: int = 0        # weight_bytes + config_bytes: the weights flash
    tensors: list = field(default_factory=list, repr=False)

    def add(self, name: str, elements: int, dtype: str, parameter: bool) -> None:
        """Count one constant tensor (call once per tensor)."""
        n, nbytes = int(elements), stored_bytes(elements, dtype)
        self.total_bytes += nbytes
        if not parameter:
            self.config_bytes += nbytes
            return
        self.weight_bytes += nbytes
        kind = _QUANTIZED.get(dtype) or ("float" if dtype.startswith(("float", "bfloat")) else "other")
        setattr(self, f"{kind}_params", getattr(self, f"{kind}_params") + n)
        self.tensors.append({"name": name, "bits": dtype_bits(dtype), "params": n})

    @property
    def quantized_weight_params(self) -> int:
        return self.int4_params + self.int8_params

    @property
    def w4_share(self) -> float:
        n = self.quantized_weight_params
        return 100.0 * self.int4_params / n if n else 0.0

    @property
    def w8_share(self) -> float:
        n = self.quantized_weight_params
        return 100.0 * self.int8_params / n if n else 0.0

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("tensors")
        d["total_kib"] = round(self.total_bytes / 1024, 2)
        d["w4_share"] = round(self.w4_share, 2)
        d["w8_share"] = round(self.w8_share, 2)
        return d


def weights_flash(constants: Iterable[tuple[str, int, str, bool]]) -> WeightsFlash:
    """The weights flash of a model's constant tensors, each given once as (name, elements, dtype, parameter)."""
    wf = WeightsFlash()
    for name, elements, dtype, parameter in constants:
        wf.add(name, elements, dtype, parameter)
    return wf
