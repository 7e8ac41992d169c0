"""How a .tflite is run: the one place that creates LiteRT interpreters.

A bottom-layer module (any stage may import it). :func:`probe_tflite` runs a
model once in a child process, so that a flatbuffer that crashes LiteRT is
refused instead of taking mcuzoo down; :func:`check_tflite_tensors` refuses
quantization parameters that no runtime can use; :func:`open_tflite` builds the
interpreter that evaluate and predict run.
"""
from __future__ import annotations

from pathlib import Path

from .console import captured_output
from .errors import McuzooError, ModelFileError

_PROBE = r"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
data = sys.stdin.buffer.read()
it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
it._get_ops_details()
it.get_tensor_details()
rng = np.random.default_rng(0)

def fill(d, how):
    dt = np.dtype(d["dtype"])
    shape = tuple(int(s) for s in d["shape"])
    if how == "zeros":
        return np.zeros(shape, dt)
    if dt.kind in "ui":
        lo, hi = max(np.iinfo(dt).min, -128), min(np.iinfo(dt).max, 255)
        return (rng.integers(lo, hi + 1, size=shape) if how == "random" else np.full(shape, hi)).astype(dt)
    return (rng.random(shape) if how == "random" else np.full(shape, 255.0)).astype(dt)

# with the default delegates (XNNPACK), from memory (evaluate) and from the file, memory-mapped (analyze)
for source in ("content", "path")[: len(sys.argv)]:
    it = Interpreter(model_content=data) if source == "content" else Interpreter(model_path=sys.argv[1])
    for batch in (1, 2):
        ins = it.get_input_details()
        if batch == 2:
            if len(ins) != 1 or len(ins[0]["shape"]) < 1:
                break
            it.resize_tensor_input(ins[0]["index"], [2, *ins[0]["shape"][1:]])
        it.allocate_tensors()
        for how in ("zeros", "random", "max"):
            for d in it.get_input_details():
                it.set_tensor(d["index"], fill(d, how))
            it.invoke()
            for d in it.get_output_details():
                it.get_tensor(d["index"])
"""
_PROBED: dict[str, str | None] = {}  # sha256 of a model -> why LiteRT cannot be trusted with it (None: fine)
PROBE_TIMEOUT_S = 120


def probe_tflite(data: bytes, path) -> None:
    """ModelFileError when LiteRT crashes (or hangs) on this flatbuffer: found out in a child process.

    LiteRT verifies the flatbuffer but not everything in it: some malformed models (found by
    fuzzing) crash the process with a segmentation fault while loading, allocating or running,
    which no ``except`` can catch. So a model is first loaded, allocated and run in a child (batch
    1 and 2; zero, random and maximal inputs; from memory as evaluate loads it and memory-mapped
    from the file as analyze does); only a model the child survives is opened in this process.
    A Python exception in the child is fine here: the same error is raised again, cleanly, in
    this process. Results are cached per file content.
    """
    import hashlib
    import subprocess
    import sys

    key = hashlib.sha256(data).hexdigest()
    if key not in _PROBED:
        why = None
        try:
            file = [str(path)] if Path(path).is_file() and Path(path).read_bytes() == data else []
            res = subprocess.run([sys.executable, "-c", _PROBE, *file], input=data, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S)
            if res.returncode < 0:
                why = f"LiteRT crashes on it (signal {-res.returncode}): the file is corrupt or hostile"
        except subprocess.TimeoutExpired:
            why = f"LiteRT did not finish loading and running it in {PROBE_TIMEOUT_S} s"
        except OSError:  # cannot start a process here: go on without the probe
            why = None
        _PROBED[key] = why
    if _PROBED[key]:
        raise ModelFileError(f"cannot read {path}: {_PROBED[key]}")


def check_tflite_tensors(tensor_details: list[dict], path) -> None:
    """ModelFileError for quantization parameters no runtime can use.

    LiteRT's flatbuffer verifier accepts them, but its XNNPACK delegate (on by default) reads out
    of bounds on some and crashes the process, e.g. a uint8 input with zero point 256.
    """
    import numpy as np

    for d in tensor_details:
        q = d.get("quantization_parameters") or {}
        scales = np.asarray(q.get("scales", ()), dtype=np.float64).reshape(-1)
        zps = np.asarray(q.get("zero_points", ()), dtype=np.int64).reshape(-1)
        if not len(scales) and not len(zps):
            continue
        where = f"{path}: tensor {d.get('index')} ({str(d.get('name', ''))[:60]!r})"
        dtype = np.dtype(d["dtype"])
        if dtype.kind in "iu" and len(zps):
            info = np.iinfo(dtype)
            if zps.min() < info.min or zps.max() > info.max:
                raise ModelFileError(f"{where} has a zero point outside {dtype.name} ({int(zps.min())}..{int(zps.max())})")
        if len(scales) and not np.all(np.isfinite(scales) & (scales > 0)):
            raise ModelFileError(f"{where} has a quantization scale that is not a positive number")
        if len(scales) > 1:
            shape = [int(v) for v in d.get("shape", ())]
            axis = int(q.get("quantized_dimension", 0))
            if len(zps) not in (0, len(scales)) or not 0 <= axis < len(shape) or shape[axis] != len(scales):
                raise ModelFileError(f"{where} has {len(scales)} quantization channels that do not match its shape {shape}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def open_tflite(data: bytes, path):
    """(interpreter, input details, output details) of a .tflite's bytes, checked first.

    The flatbuffer identifier is checked, the model is probed in a child process
    (:func:`probe_tflite`), its tensors are read without delegates and checked
    (:func:`check_tflite_tensors`), and only then is the interpreter built that runs it.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{path} is not a TensorFlow Lite flatbuffer (no TFL3 identifier)")
    probe_tflite(data, path)  # a model that crashes LiteRT is refused, not run here
    try:
        with captured_output():
            # first without delegates, which only reads the file: refuse what would crash XNNPACK
            plain = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            check_tflite_tensors(plain.get_tensor_details(), path)
            del plain
            interp = Interpreter(model_content=data, num_threads=None)
            inputs, outputs = interp.get_input_details(), interp.get_output_details()
    except McuzooError:
        raise
    except Exception as e:  # noqa: BLE001 - ValueError, RuntimeError, UnicodeDecodeError (a corrupt name)...
        raise ModelFileError(f"cannot load {path}: {_first_line(e)}") from None
    return interp, inputs, outputs
