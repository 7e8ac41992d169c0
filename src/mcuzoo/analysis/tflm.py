"""The tensor arena TensorFlow Lite Micro needs for a .tflite, from a model of its allocator.

:func:`tflm_arena_bytes` answers "which ``arena_size`` does TFLM's
``MicroInterpreter`` need to allocate and invoke this model?" without running
it. TFLM splits its arena into a *head*, which holds the planned tensors, and a
*tail*, which holds what lives as long as the interpreter. The model follows
TFLM's allocator (``micro_allocator.cc``, ``micro_interpreter.cc``, the
kernels' ``Init``/``Prepare``) step by step:

- **planned** (head): every activation tensor (not constant, not variable,
  non-zero size) and every kernel scratch buffer, sizes rounded up to 16 bytes,
  placed by TFLM's ``GreedyMemoryPlanner`` on TFLM's lifetimes. Without scratch
  buffers this is exactly mcuzoo's ``activation_baseline_bytes``
  (:func:`mcuzoo.analysis.planner.tflm_greedy`).
- **persistent** (tail), in TFLM's order, each aligned as TFLM aligns it: the
  allocator's own objects; one ``TfLiteEvalTensor`` per tensor; one
  ``NodeAndRegistration`` per operator; each operator's parsed builtin options;
  each kernel's ``OpData`` (``Init``) and its per-channel output multiplier and
  shift arrays (``Prepare``); the scratch-buffer handles; the input and output
  pointer arrays and their persistent ``TfLiteTensor`` structs with their
  quantization (``TfLiteAffineQuantization`` and a zero-point array).
- **peaks** during allocation: while the plan is made, the head also holds the
  scratch-buffer requests, one ``AllocationInfo`` per tensor and the greedy
  planner's 40 bytes per buffer; while a kernel is prepared, its temporary
  ``TfLiteTensor`` structs. On a small model with many tensors these peaks,
  not the final layout, set the minimum.

The arena is the largest of the final head + tail and the peaks, rounded up to
16 bytes.

**Which build.** The struct and ``OpData`` sizes are those of the interpreter
mcuzoo tests against: the ``tflite-micro`` Python package (reference kernels,
a 64-bit host build). That is the ground truth the tests check, by bisecting
the smallest arena with which the real interpreter allocates and invokes each
model. On a 32-bit Cortex-M, pointers take 4 bytes instead of 8, so TFLM's
structs (``TfLiteEvalTensor`` 12 instead of 24 bytes, ``TfLiteTensor``,
``NodeAndRegistration``) and therefore the tail are smaller: the figure is an
upper bound there, by a few bytes per tensor and operator. Its planned part is
the same on both. CMSIS-NN kernels request scratch buffers of their own
(im2col) that the reference kernels do not; they are not counted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelFileError
from ..runtime import check_tflite_identifier
from . import planner as _planner
from .graph.tflite import offline_memory_plan

__all__ = ["TflmArena", "tflm_arena", "tflm_arena_bytes", "tflm_runs", "smallest_arena", "KERNELS", "STRUCTS"]

ALIGN = 16  # MicroArenaBufferAlignment()

#: Sizes (bytes) and alignments of TFLM's structs in the tflite-micro Python build (64-bit).
STRUCTS = {
    "allocator_objects": 488,  # RecordingSingleArenaBufferAllocator, planner, RecordingMicroAllocator, ...
    "TfLiteEvalTensor": 24,
    "NodeAndRegistration": 64,
    "TfLiteTensor": 64,
    "TfLiteAffineQuantization": 24,
    "pointer": 8,
    "ScratchBufferHandle": 8,
    "ScratchBufferRequest": 16,
    "AllocationInfo": 32,
    "planner_per_buffer": 40,  # GreedyMemoryPlanner: BufferRequirements + 2 sort ints + ListEntry + offset
    "planning_slack": 16,  # measured: up to 16 bytes of alignment between the temporaries while TFLM plans
    "max_scratch_buffers_per_op": 12,
}


@dataclass(frozen=True)
class Kernel:
    """What one TFLM reference kernel allocates.

    ``opdata``: bytes of its ``OpData`` (``Init``, 0 when it has none);
    ``per_channel``: ``"always"`` (conv, depthwise: multiplier and shift arrays of
    the output channels), ``"if_per_channel"`` (fully connected: only with a
    per-channel quantized filter) or ``None``; ``builtin``: (size, alignment) of
    the parsed builtin options; ``scratch``: kind of scratch buffers requested.
    """

    opdata: int
    per_channel: str | None = None
    builtin: tuple[int, int] = (0, 1)
    scratch: str | None = None
    temps: bool = True  # Prepare reads its tensors as temporary TfLiteTensors


#: Reference kernels of the ops mcuzoo's models produce (and a few common neighbours).
KERNELS: dict[str, Kernel] = {
    "CONV_2D": Kernel(80, "always", (28, 4)),
    "DEPTHWISE_CONV_2D": Kernel(80, "always", (28, 4)),
    "FULLY_CONNECTED": Kernel(72, "if_per_channel", (24, 4)),
    "MEAN": Kernel(44, None, (1, 1), "reduce"),
    "SUM": Kernel(44, None, (1, 1), "reduce"),
    "SOFTMAX": Kernel(80, None, (4, 4)),
    "QUANTIZE": Kernel(32),
    "DEQUANTIZE": Kernel(32),
    "MAX_POOL_2D": Kernel(32, None, (40, 4)),
    "AVERAGE_POOL_2D": Kernel(32, None, (40, 4)),
    "ADD": Kernel(60, None, (8, 4)),
    "MUL": Kernel(36, None, (4, 4)),
    "CONCATENATION": Kernel(80, None, (8, 4)),
    "MINIMUM": Kernel(0, temps=False),
    "MAXIMUM": Kernel(0, temps=False),
    "LOGISTIC": Kernel(16),
    "RESHAPE": Kernel(0, None, (36, 4)),
    "RELU": Kernel(16),
    "RELU6": Kernel(16),
}
UNKNOWN_KERNEL = Kernel(96, None, (40, 4))  # an op outside the table: a generous guess, flagged in the result

_DTYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 0, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 4, 15: 4,
                16: 2, 17: 0, 18: 0}  # TensorType -> bytes per element (int4 / string: special)


@dataclass
class TflmArena:
    """The arena TFLM needs, and its parts (bytes). ``arena_bytes`` is what to give ``arena_size``."""

    arena_bytes: int
    planned_bytes: int  # head: planned tensors and scratch buffers (TFLM's greedy plan)
    persistent_bytes: int  # tail after allocation
    tensor_structs_bytes: int  # TfLiteEvalTensor per tensor
    node_structs_bytes: int  # NodeAndRegistration per operator
    builtin_data_bytes: int  # parsed builtin options
    kernel_persistent_bytes: int  # OpData and per-channel arrays of the kernels
    io_tensor_bytes: int  # persistent TfLiteTensor structs of the inputs and outputs, with their quantization
    scratch_bytes: int  # sum of the kernels' scratch buffers (planned in the head)
    fixed_bytes: int  # the allocator's own objects
    planning_peak_bytes: int  # tail + head while the memory plan is made
    prepare_peak_bytes: int  # tail + head while the kernels are prepared
    binding: str  # which of final / planning / prepare sets arena_bytes
    tensors: int
    operators: int
    unknown_ops: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class _Tail:
    """TFLM's persistent allocator: allocations grow down from the arena's (16-aligned) end."""

    def __init__(self) -> None:
        self.used = 0

    def alloc(self, size: int, align: int) -> int:
        before = self.used
        self.used = _align_up(self.used + size, align)
        return self.used - before


def _read_model(data: bytes, name: str):
    from ai_edge_litert import schema_py_generated as s

    check_tflite_identifier(data, name)
    try:
        model = s.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ModelFileError(f"{name} has no subgraph")
        names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
        return model, names
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - flatbuffers raise struct/index errors on garbage
        raise ModelFileError(f"{name} is malformed or truncated: not a valid TensorFlow Lite flatbuffer ({e})") from None


def tflm_arena(tflite_path_or_bytes) -> TflmArena:
    """The arena TFLM needs for a .tflite (path or bytes), with its breakdown; see the module docstring."""
    if isinstance(tflite_path_or_bytes, (bytes, bytearray, memoryview)):
        data, name = bytes(tflite_path_or_bytes), "model"
    else:
        path = Path(tflite_path_or_bytes)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelFileError(f"cannot read {path}: {e.strerror or e}") from None
        name = str(path)
    try:
        return _arena(data, name)
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - a flatbuffer that parses but is inconsistent
        raise ModelFileError(f"{name} is malformed: {type(e).__name__}: {e}") from None


def tflm_arena_bytes(tflite_path_or_bytes) -> int:
    """Bytes of tensor arena TFLM needs to allocate and invoke this .tflite (see :func:`tflm_arena`)."""
    return tflm_arena(tflite_path_or_bytes).arena_bytes


def _arena(data: bytes, name: str) -> TflmArena:
    """The model of TFLM's allocator, step by step in TFLM's order (see the module docstring)."""
    model, opnames = _read_model(data, name)
    sg = model.Subgraphs(0)
    tensors = _Tensors(model, sg)
    ops, unknown = _operators(model, sg, opnames)
    kernels = _kernel_allocations(ops, tensors)
    tail = _Tail()
    tail.used = STRUCTS["allocator_objects"]
    fixed = tail.used
    eval_b, node_b, builtin_b = _interpreter_structs(tail, model, ops)
    kernel_b, prepare_peak = _kernel_persistent(tail, kernels)
    if kernels.scratch:
        tail.alloc(STRUCTS["ScratchBufferHandle"] * len(kernels.scratch), 8)
    buffers, planned = _head_plan(data, name, model, sg, ops, tensors, kernels.scratch)
    planning_peak = tail.used + _planning_head(len(kernels.scratch), model.SubgraphsLength(), len(tensors.all),
                                               len(buffers))
    io_b = _io_tensors(tail, sg, tensors)
    final = _align_up(planned, ALIGN) + tail.used

    candidates = {"final": final, "planning": planning_peak, "prepare": prepare_peak}
    binding = max(candidates, key=lambda k: candidates[k])
    return TflmArena(
        arena_bytes=_align_up(candidates[binding], ALIGN),
        planned_bytes=int(planned),
        persistent_bytes=int(tail.used),
        tensor_structs_bytes=int(eval_b),
        node_structs_bytes=int(node_b),
        builtin_data_bytes=int(builtin_b),
        kernel_persistent_bytes=int(kernel_b),
        io_tensor_bytes=int(io_b),
        scratch_bytes=int(sum(_align_up(b, ALIGN) for _, b in kernels.scratch)),
        fixed_bytes=int(fixed),
        planning_peak_bytes=int(planning_peak),
        prepare_peak_bytes=int(prepare_peak),
        binding=binding,
        tensors=len(tensors.all),
        operators=len(ops),
        unknown_ops=sorted(set(unknown)),
    )


class _Tensors:
    """The tensors of subgraph 0, read as TFLM's allocator reads them (by tensor index)."""

    def __init__(self, model, sg) -> None:
        self.model = model
        self.all = [sg.Tensors(i) for i in range(sg.TensorsLength())]

    def const(self, i: int) -> bool:
        """True when the tensor has data in the file (a weight, a bias, a shape constant)."""
        b = self.model.Buffers(self.all[i].Buffer())
        return b is not None and (b.DataLength() > 0 or b.Offset() > 1)

    def nbytes(self, i: int) -> int:
        import numpy as np

        t = self.all[i]
        shape = t.ShapeAsNumpy() if t.ShapeLength() else np.zeros(0, dtype=np.int32)
        elems = int(np.prod(shape)) if len(shape) else 1
        ty = t.Type()
        if ty in (17, 18):  # INT4 / UINT4: packed
            return (elems + 1) // 2
        return elems * _DTYPE_BYTES.get(ty, 4)

    def qchannels(self, i: int) -> int:
        """Its quantization channels (scale and zero point pairs), 0 when it is not quantized."""
        q = self.all[i].Quantization()
        if q is None or q.ScaleLength() == 0 or q.ZeroPointLength() == 0:
            return 0
        return q.ScaleLength()

    def shape(self, i: int) -> list[int]:
        t = self.all[i]
        return [int(x) for x in t.ShapeAsNumpy()] if t.ShapeLength() else []


def _operators(model, sg, opnames: dict) -> tuple[list[tuple[str, list[int], list[int], Kernel]], list[str]]:
    """(name, inputs, outputs, kernel) of every operator of subgraph 0, and the names without a known kernel."""
    ops = []
    unknown: list[str] = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        opname = opnames.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
        kern = KERNELS.get(opname)
        if kern is None:
            unknown.append(opname)
            kern = UNKNOWN_KERNEL
        ops.append((opname, ins, outs, kern))
    return ops, unknown


@dataclass
class _KernelAllocations:
    """What the kernels ask for: ``Init``'s OpData (tail), per operator ``Prepare``'s persistent arrays (tail),
    the scratch buffers as (op index, bytes) (head, planned) and the temporary TfLiteTensors' bytes (head)."""

    init: list[int] = field(default_factory=list)
    prepare: list[list[int]] = field(default_factory=list)
    scratch: list[tuple[int, int]] = field(default_factory=list)
    temps: list[int] = field(default_factory=list)


def _kernel_allocations(ops, tensors: _Tensors) -> _KernelAllocations:
    """The allocations of every operator's kernel, in operator order."""
    out = _KernelAllocations()
    for k, (opname, ins, outs, kern) in enumerate(ops):
        if kern.opdata:
            out.init.append(kern.opdata)
        out.prepare.append(_prepare_arrays(opname, ins, outs, kern, tensors))
        if kern.scratch == "reduce" and outs:
            out.scratch += [(k, size) for size in _reduce_scratch(ins, outs, tensors)]
        out.temps.append(_prepare_temps(ins, outs, kern, tensors))
    return out


def _prepare_arrays(opname: str, ins: list[int], outs: list[int], kern: Kernel, tensors: _Tensors) -> list[int]:
    """Bytes of the persistent arrays a kernel's ``Prepare`` allocates: per-channel multiplier and shift."""
    per_op: list[int] = []
    channels = 0
    if kern.per_channel and len(ins) > 1 and ins[1] >= 0:
        fshape = tensors.shape(ins[1])
        if opname == "DEPTHWISE_CONV_2D":
            channels = fshape[-1] if fshape else 0
        elif outs:
            oshape = tensors.shape(outs[0])
            channels = oshape[-1] if oshape else 0
        if kern.per_channel == "if_per_channel" and tensors.qchannels(ins[1]) <= 1:
            channels = 0
    if channels:
        per_op += [4 * channels, 4 * channels]
    if opname == "FULLY_CONNECTED" and (len(ins) < 3 or ins[2] < 0):
        per_op.append(16)  # measured: a fully connected layer without bias allocates 16 bytes more
    return per_op


def _reduce_scratch(ins: list[int], outs: list[int], tensors: _Tensors) -> list[int]:
    """reduce_common.cc's scratch buffers: the int32 sums, then PrepareSimple's index and resolved-axis arrays."""
    import numpy as np

    shape = tensors.shape
    out_elems = max(1, int(np.prod(shape(outs[0])) if shape(outs[0]) else 1))
    rank = len(shape(ins[0])) if ins and ins[0] >= 0 else 4
    n_axis = max(1, int(np.prod(shape(ins[1])))) if len(ins) > 1 and ins[1] >= 0 and shape(ins[1]) else 1
    return [4 * out_elems, 4 * rank, 4 * n_axis]


def _prepare_temps(ins: list[int], outs: list[int], kern: Kernel, tensors: _Tensors) -> int:
    """Head bytes of the temporary TfLiteTensor structs (with their quantization) a kernel's Prepare holds."""
    temp = 0
    # reduce_common.cc: PrepareMeanOrSumHelper holds its temporaries while PrepareSimple takes them again
    for t in ([*ins, *outs] * (2 if kern.scratch == "reduce" else 1)) if kern.temps else []:
        if t < 0:
            continue
        temp = _align_up(temp + STRUCTS["TfLiteTensor"], 8)
        c = tensors.qchannels(t)
        if c:
            temp = _align_up(temp + STRUCTS["TfLiteAffineQuantization"], 8)
            temp = _align_up(temp + 4 + 4 * c, 4)
    return temp


def _interpreter_structs(tail: _Tail, model, ops) -> tuple[int, int, int]:
    """Allocate the eval tensors of every subgraph, the nodes and the builtin options in ``tail``; their bytes."""
    eval_b = 0
    for s_i in range(model.SubgraphsLength()):  # every subgraph's eval tensors (only subgraph 0 is planned)
        eval_b += tail.alloc(STRUCTS["TfLiteEvalTensor"] * model.Subgraphs(s_i).TensorsLength(), 8)
    node_b = tail.alloc(STRUCTS["NodeAndRegistration"] * len(ops), 8)
    builtin_b = 0
    for _, _, _, kern in ops:
        size, align = kern.builtin
        if size:
            builtin_b += tail.alloc(size, align)
    return eval_b, node_b, builtin_b


def _kernel_persistent(tail: _Tail, kernels: _KernelAllocations) -> tuple[int, int]:
    """Allocate the kernels' OpData, then each operator's Prepare arrays, in ``tail``.

    Returns their bytes and the peak of tail + head while the kernels are prepared: the head then holds the
    scratch-buffer requests made so far (room for 12 more) and the operator's temporary tensors.
    """
    kernel_b = 0
    for size in kernels.init:
        kernel_b += tail.alloc(size, ALIGN)
    prepare_peak = 0
    n_scratch_so_far = 0
    head_req = STRUCTS["ScratchBufferRequest"] * STRUCTS["max_scratch_buffers_per_op"]
    for k, allocs in enumerate(kernels.prepare):
        for size in allocs:
            kernel_b += tail.alloc(size, ALIGN)
        n_scratch_so_far += sum(1 for o, _ in kernels.scratch if o == k)
        head = _align_up(head_req, ALIGN) + kernels.temps[k]
        prepare_peak = max(prepare_peak, tail.used + head)
        head_req = STRUCTS["ScratchBufferRequest"] * (n_scratch_so_far + STRUCTS["max_scratch_buffers_per_op"])
    return kernel_b, prepare_peak


def _head_plan(data: bytes, name: str, model, sg, ops, tensors: _Tensors,
               scratch: list[tuple[int, int]]) -> tuple[list[_planner.Buffer], int]:
    """The planned buffers and the head's size: TFLM's greedy plan, keeping a file's offline offsets."""
    buffers = _tflm_buffers(sg, len(tensors.all), ops, tensors.const, tensors.nbytes, scratch)
    offline = offline_memory_plan(data)  # `mcuzoo export --offline-plan`: TFLM keeps those tensors there
    offline_fixed = None
    if offline is not None:
        if len(offline) != sum(model.Subgraphs(s).TensorsLength() for s in range(model.SubgraphsLength())):
            raise ModelFileError(f"{name}: its OfflineMemoryAllocation metadata does not have one offset per tensor")
        offline_fixed = [offline[b.tensors[0]] if b.tensors else -1 for b in buffers]
    return buffers, _planner.tflm_greedy(buffers, offline_fixed).arena


def _planning_head(n_scratch: int, n_subgraphs: int, n_tensors: int, n_buffers: int) -> int:
    """Head bytes while the plan is made: the request array, then the temporaries (subgraph offsets,
    AllocationInfo per tensor and scratch buffer, the greedy planner's scratch), and the measured slack."""
    st = STRUCTS
    head = _align_up(st["ScratchBufferRequest"] * (n_scratch + st["max_scratch_buffers_per_op"]), 8)
    head = _align_up(head + 8 * n_subgraphs, 8)
    head = _align_up(head + st["AllocationInfo"] * (n_tensors + n_scratch), 8)
    head = _align_up(head, ALIGN) + st["planner_per_buffer"] * n_buffers
    return _align_up(head, 8) + st["planning_slack"]


def _io_tensors(tail: _Tail, sg, tensors: _Tensors) -> int:
    """Allocate, after the plan, the interpreter's input and output pointer arrays and their persistent
    TfLiteTensor structs with their quantization in ``tail``; their bytes."""
    before_io = tail.used
    for ids in (_vec(sg.InputsAsNumpy, sg.InputsLength), _vec(sg.OutputsAsNumpy, sg.OutputsLength)):
        tail.alloc(STRUCTS["pointer"] * len(ids), ALIGN)
        for t in ids:
            tail.alloc(STRUCTS["TfLiteTensor"], 8)
            c = tensors.qchannels(t)
            if c:
                tail.alloc(STRUCTS["TfLiteAffineQuantization"], 8)
                tail.alloc(4 + 4 * c, 4)
    return tail.used - before_io


def _vec(as_numpy, length) -> list[int]:
    return [int(x) for x in as_numpy()] if length() else []


def _tflm_buffers(sg, n_t, ops, const, nbytes, scratch) -> list[_planner.Buffer]:
    """TFLM's planned buffers: tensors in id order (AllocationInfoBuilder's lifetimes), then scratch."""
    first = [-1] * n_t
    last = [-1] * n_t
    for t in _vec(sg.InputsAsNumpy, sg.InputsLength):
        first[t], last[t] = 0, 0
    graph_outs = _vec(sg.OutputsAsNumpy, sg.OutputsLength)
    for t in graph_outs:
        first[t], last[t] = 0, 0
    for k, (_, ins, outs, _) in enumerate(ops):
        scope = k + 1
        for t in outs:
            first[t], last[t] = scope, scope
        for t in ins:
            if t >= 0:
                last[t] = scope
        for t in outs:
            last[t] = scope
    for t in graph_outs:
        last[t] = len(ops)
    buffers = []
    for t in range(n_t):
        size = nbytes(t)
        if const(t) or sg.Tensors(t).IsVariable() or size == 0:
            continue
        buffers.append(_planner.Buffer(f"t{t}", _align_up(size, ALIGN), first[t], last[t], (t,)))
    for i, (k, size) in enumerate(scratch):
        buffers.append(_planner.Buffer(f"scratch{i}", _align_up(size, ALIGN), k + 1, k + 1))
    return buffers


# -- the ground truth: the real interpreter ----------------------------------------------------
def tflm_runs(path, arena_size: int) -> bool:
    """True when TFLM's interpreter allocates and invokes ``path`` (zero input) with ``arena_size`` bytes.

    Each trial runs in a forked child process: TFLM can crash, not just fail, when
    a temporary allocation does not fit. POSIX only (``os.fork``).
    """
    import os

    import numpy as np

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            from tflite_micro.python.tflite_micro import runtime

            it = runtime.Interpreter.from_file(str(path), arena_size=int(arena_size))
            d = it.get_input_details(0)
            it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), 0)
            it.invoke()
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return status == 0


def smallest_arena(path, lo: int | None = None, hi: int | None = None) -> int:
    """The smallest arena with which TFLM runs ``path``, by bisection in (lo, hi].

    TFLM must fail with ``lo`` bytes and run with ``hi`` (AssertionError otherwise);
    defaults: 0 and twice :func:`tflm_arena_bytes` (plus 64 KiB).
    """
    lo = 0 if lo is None else int(lo)
    hi = 2 * tflm_arena_bytes(path) + 65536 if hi is None else int(hi)
    assert not tflm_runs(path, lo), f"TFLM already runs {path} with {lo} bytes"
    assert tflm_runs(path, hi), f"TFLM does not run {path} with {hi} bytes"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tflm_runs(path, mid):
            hi = mid
        else:
            lo = mid
    return hi
