"""How a .tflite is run: the one place that creates LiteRT interpreters.

A bottom-layer module (any stage may import it). :func:`probe_tflite` runs a
model once in a child process, so that a flatbuffer that crashes LiteRT is
refused instead of taking mcuzoo down; :func:`check_tflite_tensors` refuses
quantization parameters that no runtime can use; :func:`open_tflite` builds the
:class:`TfliteRunner` that evaluate and predict run.

Kernels (``runtime``): ``exact`` (the default) computes what TensorFlow Lite Micro
computes, i.e. what a Cortex-M computes (CMSIS-NN is tested bit-exact against TFLM's
reference kernels), bit for bit. It runs a model on LiteRT's reference kernels
(``OpResolverType.BUILTIN_REF``, batched) where those were measured identical to TFLM's
for every operator of the model (:data:`REF_EXACT_OPS`), and otherwise on TFLM's own
interpreter (the ``tflite-micro`` package, one image per invoke). LiteRT's reference
FULLY_CONNECTED with per-channel weights rounds differently (one step on about one output
in a few thousand); LiteRT's optimised built-in kernels differ in MEAN with ``keep_dims``
and FULLY_CONNECTED, and XNNPACK on most outputs. ``xnnpack`` is the fast option (LiteRT's
default delegate); every figure it gives is labelled so. A model that XNNPACK cannot
prepare falls back to the built-in kernels, with a one-line note on stderr.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .console import captured_output
from .errors import McuzooError, ModelFileError, first_line

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

# the reference kernels (the exact path) and the default delegates (XNNPACK), from memory (evaluate) and from
# the file, memory-mapped (analyze); a Python exception (e.g. XNNPACK failing to prepare) ends one try, not the probe
REF = OpResolverType.BUILTIN_REF
for how_open in [("content", REF), ("content", None), ("path", None)][: 1 + len(sys.argv)]:
    try:
        source, resolver = how_open
        kw = {} if resolver is None else {"experimental_op_resolver_type": resolver}
        it = Interpreter(model_content=data, **kw) if source == "content" else Interpreter(model_path=sys.argv[1])
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
    except Exception:
        pass
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
                cause = _crash_cause(data, "the file is corrupt or hostile")
                why = f"LiteRT crashes on it (signal {-res.returncode}): {cause}"
        except subprocess.TimeoutExpired:
            why = f"LiteRT did not finish loading and running it in {PROBE_TIMEOUT_S} s"
        except OSError:  # cannot start a process here: go on without the probe
            why = None
        _PROBED[key] = why
    if _PROBED[key]:
        raise ModelFileError(f"cannot read {path}: {_PROBED[key]}")


#: An int8 activation whose calibrated range (scale x 255) is under this was (almost) zero on every calibration
#: image; the converter gives an all-zero range a scale of about 8e-9 (a range of 2e-6).
DEAD_RANGE = 1e-5


def dead_activations(flat: bytes) -> list[str]:
    """Names (a fused operator's first) of the int8 tensors that an operator writes (activations, not weights)
    with a calibrated range under :data:`DEAD_RANGE`: layers that gave (almost) zero on every calibration image."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(bytearray(flat), 0)
    sg = model.Subgraphs(0)
    n = sg.TensorsLength()
    ops = (sg.Operators(i) for i in range(sg.OperatorsLength()))
    written = {int(t) for op in ops if op.OutputsLength() for t in op.OutputsAsNumpy() if 0 <= t < n}
    dead = []
    for t in sorted(written):
        tensor = sg.Tensors(t)
        q = tensor.Quantization()
        if tensor.Type() != fb.TensorType.INT8 or q is None or q.ScaleLength() == 0:
            continue
        if float(q.ScaleAsNumpy().max()) * 255 < DEAD_RANGE:
            dead.append(tensor.Name().decode("utf-8", "replace").split(";")[0])  # fused ops: the first name
    return dead


def name_dead(dead: list[str]) -> str:
    """``tensor 'NAME' (and N more)``: how messages name what :func:`dead_activations` found."""
    more = f" (and {len(dead) - 1} more)" if len(dead) > 1 else ""
    return f"tensor {dead[0][-80:]!r}{more}"


def _crash_cause(data: bytes, otherwise: str) -> str:
    """Why a runtime may have crashed on a well-formed model: a layer with a zero range (measured: the int8 softmax
    aborts LiteRT and TFLM when its input has one); else ``otherwise``."""
    try:
        dead = dead_activations(data)
    except Exception:  # noqa: BLE001 - a flatbuffer the generated reader cannot walk
        return otherwise
    if not dead:
        return otherwise
    return (f"{name_dead(dead)} has a quantization range of zero (it was zero on every calibration image), which "
            "the int8 kernels cannot use")


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


def check_tflite_identifier(data: bytes, path) -> None:
    """Refuse bytes that are not a TensorFlow Lite flatbuffer: its file identifier ``TFL3`` is at bytes 4..8."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{path} is not a TensorFlow Lite model (no TFL3 identifier)")


def check_tflite_graph(data: bytes, path: Path, n_ops: int | None = None, n_tensors: int | None = None) -> None:
    """The operator graph of subgraph 0 as the flatbuffer itself holds it, checked: every tensor index of every
    operator and of the graph's inputs and outputs exists (or is -1, an optional input left out), the operator
    count and tensor count are those the interpreter reports, every tensor is written by one operator at most,
    and operators run in an order where each reads only graph inputs, constants (tensors with data) and what an
    earlier operator wrote (a cycle fails this too). A file that breaks any of it is a ModelFileError."""
    from ai_edge_litert import schema_py_generated as fb

    try:
        model = fb.Model.GetRootAs(bytearray(data), 0)
        if model.SubgraphsLength() < 1:
            raise ModelFileError(f"{path} is malformed: no subgraph")
        sg = model.Subgraphs(0)
        nt, no, nb = sg.TensorsLength(), sg.OperatorsLength(), model.BuffersLength()
        where = f"{path} is malformed"
        if n_ops is not None and no != n_ops:
            raise ModelFileError(f"{where}: the flatbuffer holds {no} operators, the interpreter runs {n_ops}")
        if n_tensors is not None and nt != n_tensors:
            raise ModelFileError(f"{where}: the flatbuffer holds {nt} tensors, the interpreter reports {n_tensors}")
        index = _TensorIndex(nt, where)
        inputs = {index(int(v), f"graph input {k}", False) for k, v in enumerate(sg.InputsAsNumpy() if sg.InputsLength() else [])}
        outputs = [index(int(v), f"graph output {k}", False) for k, v in enumerate(sg.OutputsAsNumpy() if sg.OutputsLength() else [])]
        available = inputs | _tensors_with_data(model, sg, nt, nb)  # what an operator may read without a writer
        written = _writers(sg, index, available, where)
        _check_reads(sg, index, available, written, where)
        for t in outputs:
            if t not in written and t not in available:
                raise ModelFileError(f"{where}: graph output tensor {t} is written by no operator")
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - a flatbuffer the generated reader cannot walk
        raise ModelFileError(f"{path} is malformed or truncated: not a valid TensorFlow Lite flatbuffer "
                             f"({type(e).__name__})") from None


class _TensorIndex:
    """``index(v, what, optional)``: the tensor index ``v``, checked to exist (-1 passes where optional)."""

    def __init__(self, n_tensors: int, where: str) -> None:
        self.n, self.where = n_tensors, where

    def __call__(self, v: int, what: str, optional: bool) -> int:
        if v == -1 and optional:
            return -1
        if not 0 <= v < self.n:
            raise ModelFileError(f"{self.where}: {what} refers to tensor {v} (the model has tensors 0 to {self.n - 1})")
        return v


def _tensors_with_data(model, sg, nt: int, nb: int) -> set[int]:
    """The tensors of subgraph ``sg`` (``nt`` tensors; ``nb`` buffers in the model) that hold data: variables,
    and tensors whose buffer is not empty."""
    has_data = set()
    for t in range(nt):
        tt = sg.Tensors(t)
        b = tt.Buffer()
        if tt.IsVariable():
            has_data.add(t)
        elif 0 < b < nb:
            buf = model.Buffers(b)
            if buf.DataLength() > 0 or buf.Offset() > 1:
                has_data.add(t)
    return has_data


def _writers(sg, index: _TensorIndex, available: set[int], where: str) -> dict[int, int]:
    """The operator that writes each tensor; a tensor written twice, or a graph input or constant written, fails."""
    written: dict[int, int] = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        for t in (op.OutputsAsNumpy() if op.OutputsLength() else []):
            t = index(int(t), f"operator {i}'s output", False)
            if t in written or t in available:
                raise ModelFileError(f"{where}: tensor {t} is written twice (by operator {i} and "
                                     f"{'operator ' + str(written[t]) if t in written else 'as an input or constant'})")
            written[t] = i
    return written


def _check_reads(sg, index: _TensorIndex, available: set[int], written: dict[int, int], where: str) -> None:
    """Every operator reads only ``available`` tensors and what an earlier operator wrote."""
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        for t in (op.InputsAsNumpy() if op.InputsLength() else []):
            t = index(int(t), f"operator {i}'s input", True)
            if t < 0 or t in available:
                continue
            if t not in written:
                raise ModelFileError(f"{where}: operator {i} reads tensor {t}, which no operator writes and "
                                     "which holds no data")
            if written[t] >= i:
                raise ModelFileError(f"{where}: operator {i} reads tensor {t} before operator {written[t]} writes "
                                     "it (operators out of order, or a cycle)")


#: ``runtime`` values of :func:`open_tflite` (and of ``evaluation.runtime``, ``--runtime``).
EXACT, XNNPACK = "exact", "xnnpack"
RUNTIMES = (EXACT, XNNPACK)
#: ``kernels`` as reported (metrics.json, CLI, card): what actually ran. ``builtin``: XNNPACK failed to prepare.
KERNEL_LABELS = {
    EXACT: "MCU-exact (TFLM reference kernels)",
    XNNPACK: "XNNPACK (fast, not MCU-exact)",
    "builtin": "LiteRT built-in kernels (XNNPACK failed to prepare; not MCU-exact)",
}


def kernels_label(kernels: str) -> str:
    """How a figure computed with these kernels is labelled (``exact`` -> ``MCU-exact (TFLM reference kernels)``)."""
    return KERNEL_LABELS.get(kernels, kernels)


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise McuzooError(f"unknown .tflite runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    return runtime


def default_workers() -> int:
    """Processes for the exact path: half the cores (at most 8). Measured on 2 shared cores, a second process was
    slower than one (BENCHMARKS.md), so 2 cores get 1."""
    import os

    return max(1, min(8, (os.cpu_count() or 1) // 2))


def add_runtime_args(p) -> None:
    """``--runtime {exact,xnnpack}`` and ``--fast`` (= ``--runtime xnnpack``), for the CLI verbs that run a .tflite."""
    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="kernels for a .tflite: exact (default; TFLM's reference kernels, bit-identical to the MCU) "
                        "or xnnpack (fast, not MCU-exact: its figures say so)")
    p.add_argument("--fast", action="store_true", help="same as --runtime xnnpack")


def runtime_arg(args) -> str:
    """The runtime that :func:`add_runtime_args`' options choose."""
    if args.fast and args.runtime == "exact":
        raise McuzooError("--fast means --runtime xnnpack: give one of them")
    return "xnnpack" if args.fast else (args.runtime or "exact")


def _interpreter(data: bytes, kernels: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if kernels == EXACT:
        return Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    if kernels == "builtin":
        return Interpreter(model_content=data, num_threads=None,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return Interpreter(model_content=data, num_threads=None)  # the default delegates: XNNPACK


def _delegate_failed(e: BaseException) -> bool:
    text = str(e)
    return "XNNPACK" in text or "Delegate" in text or "delegate" in text


#: Operators whose LiteRT reference kernel (BUILTIN_REF) was measured bit-identical to TFLM's on the three model
#: families (tests/test_exact.py, BENCHMARKS.md). FULLY_CONNECTED is not among them: with per-channel weights
#: LiteRT's reference kernel rounds the requantization once where TFLM (and CMSIS-NN) round twice, so one
#: output in a few thousand is off by one step. A model with any other operator runs on TFLM's interpreter.
REF_EXACT_OPS = frozenset({
    "ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D",
    "MEAN", "MINIMUM", "MUL", "QUANTIZE", "RESHAPE", "SOFTMAX",
})
#: The exact path's engines: LiteRT's reference kernels (batched, faster), or TFLM's own interpreter (the
#: ``tflite-micro`` package: one image per invoke, what the board runs).
ENGINES = {"litert-ref": "LiteRT reference kernels", "tflm": "TFLM interpreter"}
TFLM_ARENAS = (16 << 20, 64 << 20, 256 << 20)

_TFLM_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime as tflm
data = sys.stdin.buffer.read()
for arena in [int(a) for a in sys.argv[1:]]:
    try:
        it = tflm.Interpreter.from_bytes(data, arena_size=arena)
        break
    except Exception as e:
        err = e
else:
    from mcuzoo.errors import first_line
    print(first_line(err))
    sys.exit(3)
d = it.get_input_details(0)
x = np.zeros(tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]))
it.set_input(x, 0)
it.invoke()
it.get_output(0)
print(arena)
"""
_TFLM_PROBED: dict[str, tuple[int | None, str]] = {}  # sha256 -> (arena that works, or None; why not)


def ref_is_exact(op_names) -> bool:
    """Whether LiteRT's reference kernels compute what TFLM computes for a graph of these operators."""
    return set(op_names) <= REF_EXACT_OPS


def probe_tflm(data: bytes) -> tuple[int | None, str]:
    """(arena size with which TFLM's interpreter loads and runs this model, "") or (None, why not); found out in a
    child process, since a malformed model could crash TFLM. Cached per model content."""
    import hashlib
    import subprocess
    import sys

    key = hashlib.sha256(data).hexdigest()
    if key not in _TFLM_PROBED:
        try:
            res = subprocess.run([sys.executable, "-c", _TFLM_PROBE, *map(str, TFLM_ARENAS)], input=data,
                                 capture_output=True, timeout=PROBE_TIMEOUT_S)
            lines = res.stdout.decode("utf-8", "replace").strip().splitlines()
            if res.returncode == 0 and lines and lines[-1].isdigit():
                _TFLM_PROBED[key] = (int(lines[-1]), "")
            elif res.returncode < 0:
                _TFLM_PROBED[key] = (None, f"TFLM crashes on it (signal {-res.returncode})")
            else:
                _TFLM_PROBED[key] = (None, (lines[-1] if lines else f"exit status {res.returncode}")[:200])
        except subprocess.TimeoutExpired:
            _TFLM_PROBED[key] = (None, f"TFLM did not run it in {PROBE_TIMEOUT_S} s")
        except OSError as e:
            _TFLM_PROBED[key] = (None, f"cannot start a process: {e}")
    return _TFLM_PROBED[key]


class _TflmEngine:
    """TFLM's interpreter on a batch: one invoke per image (its models have batch 1)."""

    def __init__(self, data: bytes, arena: int):
        from tflite_micro.python.tflite_micro import runtime as tflm

        self._data = data  # kept alive for the interpreter
        with captured_output():
            self._it = tflm.Interpreter.from_bytes(data, arena_size=arena)

    def run(self, x):
        import numpy as np

        out = []
        for img in x:
            self._it.set_input(img[None], 0)
            self._it.invoke()
            out.append(np.array(self._it.get_output(0), copy=True))
        return np.concatenate(out)


_TFLM_CHILD = r"""
import io, os, struct, sys
import numpy as np
proto = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # whatever the interpreter prints goes to stderr, not into the answers
from mcuzoo.errors import first_line
from mcuzoo.runtime import _TflmEngine
inp = sys.stdin.buffer
def read(n):
    b = inp.read(n)
    if len(b) < n:
        sys.exit(0)
    return b
def answer(status, payload):
    proto.write(struct.pack("<cQ", status, len(payload)) + payload)
    proto.flush()
n, arena = struct.unpack("<QQ", read(16))
engine = _TflmEngine(read(n), arena)
while True:
    (k,) = struct.unpack("<Q", read(8))
    x = np.load(io.BytesIO(read(k)), allow_pickle=False)
    try:
        buf = io.BytesIO()
        np.save(buf, engine.run(x), allow_pickle=False)
        answer(b"O", buf.getvalue())
    except Exception as e:
        answer(b"E", first_line(e).encode("utf-8", "replace"))
"""
#: Seconds a TFLM child may take per image before it counts as hung (the slowest zoo model runs about 2 images/s
#: on a loaded 2-core machine), plus a fixed allowance for starting.
TFLM_SECONDS_PER_IMAGE, TFLM_START_S = 30.0, 120.0


class _TflmChild:
    """TFLM's interpreter in a child process: what mcuzoo's own process uses. The probe ran the model once on
    zeros, but a malformed model can still read or write out of bounds later (a fuzz case segfaulted in-process
    after passing it); here a crash or a hang ends in a one-line ModelFileError and mcuzoo goes on. The child is
    a plain ``python -c`` (not multiprocessing), so it works from any script, notebook or stdin. Batches go
    over its stdin and answers come back on a pipe of their own, as .npy bytes (no pickle)."""

    def __init__(self, data: bytes, arena: int, path):
        import struct
        import subprocess
        import sys

        self.path = path
        self._proc = subprocess.Popen([sys.executable, "-c", _TFLM_CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._died = False
        self._send(struct.pack("<QQ", len(data), arena) + data)
        self._started = False

    def _send(self, b: bytes) -> bool:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(b)
            self._proc.stdin.flush()
            return True
        except OSError:  # the child has died (BrokenPipeError)
            self._died = True
            return False

    def _read(self, n: int, timeout: float) -> bytes:
        import os
        import select
        import time

        assert self._proc.stdout is not None
        fd, out, end = self._proc.stdout.fileno(), b"", time.monotonic() + timeout
        while len(out) < n:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return out  # no answer in time
            chunk = os.read(fd, n - len(out))
            if not chunk:
                self._died = True
                return out  # the child has died
            out += chunk
        return out

    def _failed(self) -> ModelFileError:
        timed_out = not self._died
        if self._died:
            try:
                self._proc.wait(timeout=10)  # its exit status, once the system has it
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: reported as it is
                pass
        self.close()
        code = self._proc.returncode
        why = ("did not answer in time" if timed_out else
               f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}")
        return ModelFileError(f"{self.path} crashes TFLM's interpreter when it runs (its process {why}): a "
                              "malformed model")

    def run(self, x):
        import io
        import struct

        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(x), allow_pickle=False)
        b = buf.getvalue()
        timeout = TFLM_SECONDS_PER_IMAGE * len(x) + (0.0 if self._started else TFLM_START_S)
        head = self._read(9, timeout) if self._send(struct.pack("<Q", len(b)) + b) else b""
        if len(head) < 9:
            raise self._failed()
        status, k = struct.unpack("<cQ", head)
        payload = self._read(k, timeout)
        if len(payload) < k:
            raise self._failed()
        self._started = True
        if status == b"E":
            raise ValueError(payload.decode("utf-8", "replace"))
        return np.load(io.BytesIO(payload), allow_pickle=False)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for f in (self._proc.stdin, self._proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


_WORKER: dict = {}


def _worker_init(data: bytes, path: str, kernels: str, engine: str, arena: int | None) -> None:
    _WORKER["runner"] = TfliteRunner(data, path, kernels, workers=1, _checked=True, _engine=(engine, arena))


def _worker_run(x):
    return _WORKER["runner"].run(x)


class TfliteRunner:
    """A .tflite's interpreter that runs batches: ``run(x)`` resizes the input to ``len(x)`` (once per new batch
    size) and returns the first output tensor as stored (int8 outputs are not dequantized here).

    ``kernels`` says what runs it (see :data:`KERNEL_LABELS`); an XNNPACK model that fails to prepare switches to
    ``builtin`` with a note on stderr. With ``workers`` > 1 (exact path only), a batch of at least
    ``2 * workers`` images is split between that many processes, each with its own interpreter: the reference
    kernels are single-threaded, and the images of a batch are independent, so the result is the same.
    """

    def __init__(self, data: bytes, path, runtime: str = EXACT, workers: int | None = 1, *, _checked: bool = False,
                 _engine: tuple[str, int | None] | None = None):
        self.data, self.path = data, path
        self.engine = ""  # the exact path's: litert-ref or tflm (see ENGINES)
        self._tflm: _TflmEngine | _TflmChild | None = None
        self._arena: int | None = None
        self.kernels = check_runtime(runtime) if runtime != "builtin" else runtime
        self.workers = default_workers() if workers is None else max(1, int(workers))
        if self.kernels != EXACT:
            self.workers = 1
        self._pool: Any = None  # a ProcessPoolExecutor once the exact path runs on several workers
        self._in_worker = _engine is not None  # a process of that pool (TFLM may run in it directly)
        self._batch: int | None = None
        self.fallback_note = ""
        try:
            with captured_output():
                if not _checked:
                    # first without delegates, which only reads the file: refuse what would crash XNNPACK
                    check_tflite_tensors(_interpreter(data, "builtin").get_tensor_details(), path)
                try:
                    self._interp = _interpreter(data, self.kernels)
                except (ValueError, RuntimeError) as e:
                    if self.kernels != XNNPACK or not _delegate_failed(e):
                        raise
                    self._fall_back(e, quiet=True)
                self.inputs = self._interp.get_input_details()
                self.outputs = self._interp.get_output_details()
                if self.kernels == EXACT:
                    self._choose_engine(_engine)
        except McuzooError:
            raise
        except Exception as e:  # noqa: BLE001 - ValueError, RuntimeError, UnicodeDecodeError (a corrupt name)...
            raise ModelFileError(f"cannot load {path}: {first_line(e)}") from None
        if self.fallback_note:
            from .console import error

            error(f"note: {self.fallback_note}")

    @property
    def label(self) -> str:
        return kernels_label(self.kernels)

    def _choose_engine(self, given: tuple[str, int | None] | None) -> None:
        """LiteRT's reference kernels where they are TFLM's for every operator of the model, else TFLM itself."""
        if given is not None:
            self.engine, self._arena = given
        else:
            ops = {str(op.get("op_name", "")) for op in self._interp._get_ops_details()}
            if ref_is_exact(ops):
                self.engine = "litert-ref"
            else:
                self._arena, why = probe_tflm(self.data)
                if self._arena is None:  # TFLM cannot run it (an operator it lacks): no board to match
                    self.engine = "litert-ref"
                    self.fallback_note = (f"TFLM's interpreter cannot run {Path(str(self.path)).name} ({why}): "
                                          "running LiteRT's reference kernels, which may differ from TFLM on "
                                          f"{', '.join(sorted(ops - REF_EXACT_OPS))}")
                else:
                    self.engine = "tflm"

    def _fall_back(self, e: BaseException, quiet: bool = False) -> None:
        self.fallback_note = (f"XNNPACK could not prepare {Path(str(self.path)).name} "
                              f"({first_line(e)}): running LiteRT's built-in kernels instead")
        if not quiet:
            from .console import error

            error(f"note: {self.fallback_note}")
        self.kernels = "builtin"
        self._interp = _interpreter(self.data, "builtin")
        self._batch = None

    def _prepare(self, n: int) -> None:
        inp = self.inputs[0]
        with captured_output():  # LiteRT prints an INFO line about its XNNPACK delegate
            self._interp.resize_tensor_input(inp["index"], (n, *[int(d) for d in inp["shape"][1:]]))
            self._interp.allocate_tensors()
        self._batch = n

    def _run_here(self, x):
        if self.engine == "tflm":
            if self._tflm is None:  # in a pool's process, here; from mcuzoo's own process, in a child
                arena = int(self._arena or TFLM_ARENAS[0])
                self._tflm = _TflmEngine(self.data, arena) if self._in_worker else _TflmChild(self.data, arena, self.path)
            try:
                return self._tflm.run(x)
            except (ValueError, RuntimeError) as e:
                raise ModelFileError(f"cannot run {self.path}: {first_line(e)}") from None
        for attempt in (0, 1):
            try:
                if self._batch != len(x):
                    self._prepare(len(x))
                self._interp.set_tensor(self.inputs[0]["index"], x)
                self._interp.invoke()
                return self._interp.get_tensor(self.outputs[0]["index"]).copy()
            except (ValueError, RuntimeError) as e:  # e.g. "Input tensor 6 lacks data", "Tensor data is null"
                if attempt == 0 and self.kernels == XNNPACK and _delegate_failed(e):
                    self._fall_back(e)  # "failed to create XNNPACK runtime ... failed to prepare"
                    continue
                raise ModelFileError(f"cannot run {self.path}: {first_line(e)}") from None
        raise AssertionError("unreachable")

    def run(self, x):
        """The first output of the model for the batch ``x`` (already of the input's dtype)."""
        import numpy as np

        if self.workers > 1 and len(x) >= 2 * self.workers:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                                 initializer=_worker_init,
                                                 initargs=(self.data, str(self.path), self.kernels, self.engine,
                                                           self._arena))
            chunks = np.array_split(x, self.workers)
            try:
                return np.concatenate(list(self._pool.map(_worker_run, chunks)))
            except McuzooError:
                raise
            except Exception:  # noqa: BLE001 - a broken pool (no processes here, or one died): run from here
                self.close()
                self.workers = 1
        return self._run_here(x)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if isinstance(self._tflm, _TflmChild):
            self._tflm.close()
            self._tflm = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def open_tflite(data: bytes, path, runtime: str = EXACT, workers: int | None = 1) -> TfliteRunner:
    """The :class:`TfliteRunner` of a .tflite's bytes, checked first.

    The flatbuffer identifier is checked, the model is probed in a child process
    (:func:`probe_tflite`), its tensors are read without delegates and checked
    (:func:`check_tflite_tensors`), and only then is the interpreter built that runs it:
    TFLM-exact reference kernels by default, XNNPACK with ``runtime="xnnpack"``.
    """
    check_runtime(runtime)
    check_tflite_identifier(data, path)
    check_tflite_graph(data, path)  # a graph that lies (indices, order, cycles) is refused, not run
    probe_tflite(data, path)  # a model that crashes LiteRT is refused, not run here
    return TfliteRunner(data, path, runtime, workers)
