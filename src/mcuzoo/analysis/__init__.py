"""Know whether a model fits a board without the board.

``analyze(model_path, target=None, plot=None)`` reads a .tflite, .onnx or
.keras model into one operator graph (:mod:`.graph`), counts parameters, MACs
and flash, plans the activation arena (:mod:`.planner`: TFLM's greedy planner
as the baseline, ours, and the lower bound), checks every known board
(:mod:`.boards`: RAM/flash headroom and a latency estimate fitted on the model
cards), computes the tensor arena TensorFlow Lite Micro needs for a .tflite
(:mod:`.tflm`), measures the host latency (LiteRT / ONNX Runtime) and optionally draws
the memory timeline (:mod:`.report`).

The activation arena holds the model's input and output buffers too, as the
cards' figures do ("input/output allocated").

**Runtimes.** ``runtime="tflm"`` (the default) fits the boards with
``tflm_arena_bytes``, the whole arena a TFLM build needs; ``runtime="cards"``
with the cards' convention (activations with input and output, plus the
runtime's RAM apart). A model that is not a .tflite has no TFLM figure: its fit
uses the cards' convention and says so (``runtime_note``).

CLI: ``mcuzoo analyze MODEL [--target BOARD] [--runtime tflm|cards] [--board-file YAML |
--ram REGIONS --flash SIZE --core CORE --mhz MHZ] [--json] [--plot PNG]``, added to
a parser by :func:`register_cli`.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import McuzooError
from . import boards as _boards
from . import planner as _planner
from . import tflm as _tflm
from .graph import Graph, load_graph

__all__ = ["Analysis", "analyze", "analyze_graph", "register_cli", "measure_host_latency", "load_graph"]

REFERENCE_BOARD = "STM32H747"  # per-layer latency column when no target is given


@dataclass
class Analysis:
    """What :func:`analyze` found; :meth:`to_json` gives a JSON-ready dict."""

    model: str
    format: str
    params: int
    macs: int
    weights_bytes: int
    quant_params_bytes: int
    flash_bytes: int
    activation_bytes: int
    activation_baseline_bytes: int
    activation_lower_bound_bytes: int
    activation_lower_bound_best_order_bytes: int
    input_bytes: int
    output_bytes: int
    planner: str
    reordered: bool
    execution_order: list[int]
    layers: list[dict]
    boards: dict[str, dict]
    fits_on: list[str]
    target: dict | None
    latency_board: str
    host_latency_ms: float | None
    host_runtime: str | None
    host_runs: int
    analysis_time_s: float
    host: dict | None = None  # the machine host_latency_ms was measured on
    memory_plan: list[dict] = field(default_factory=list)
    plot_path: str | None = None
    io_in_arena: bool = True
    runtime: str = "tflm"  # what the board fits count: tflm (tflm_arena_bytes) or cards (activation_bytes)
    runtime_note: str | None = None
    tflm_arena_bytes: int | None = None  # the arena TFLM needs (.tflite only)
    tflm_arena: dict | None = None  # its breakdown (analysis.tflm.TflmArena)
    plan: object = field(default=None, repr=False)  # the planner.Plan (not in JSON)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("plan", None)
        d["latency_model"] = _boards.latency_model_report()
        d["conventions"] = {
            "io_in_arena": "the model's input and output buffers are inside the activation arena",
            "alignment_bytes": _planner.ALIGNMENT,
            "weights_bytes": "bytes of constant tensors (int8 weights, int32 biases, shape constants): the cards' weights flash",
            "quant_params_bytes": "8 bytes (float32 scale + int32 zero point) per quantization channel of weights and activations",
            "flash_bytes": "weights_bytes + quant_params_bytes (used for the board fits, plus the code estimate)",
            "activation_baseline_bytes": "TFLM GreedyMemoryPlanner on the model's own execution order",
            "activation_lower_bound_bytes": "max over operators of the live bytes, for the chosen order",
            "scratch": "kernel scratch buffers (im2col) are not included in activation_bytes",
            "activation_bytes": "the cards' convention: mcuzoo's planned activation arena, input and output inside",
            "tflm_arena_bytes": "the arena_size TensorFlow Lite Micro needs (planned tensors, persistent buffers, "
                                "kernel requests; the tflite-micro Python build, 64-bit), 16-byte multiple",
            "runtime": "which figure the board fits use: tflm -> tflm_arena_bytes in one RAM region; "
                       "cards -> activation_bytes in one RAM region plus the runtime's RAM elsewhere",
        }
        return d


def analyze(model_path, target: "str | _boards.Board | None" = None, plot: str | Path | None = None, *,
            runtime: str = "tflm", measure_host: bool = True, search_order: bool = True,
            host_runs: int = 20) -> Analysis:
    """Analyze a .tflite/.onnx/.keras file; see the module docstring. User errors raise McuzooError.

    ``target``: a board name (:func:`~.boards.find_board`) or a :class:`~.boards.Board`
    (e.g. from :func:`~.boards.load_board_file`); a custom board joins the board table.
    """
    if runtime not in _boards.RUNTIMES:
        raise McuzooError(f"unknown runtime '{runtime}' (one of {', '.join(_boards.RUNTIMES)})")
    board: _boards.Board | None
    if isinstance(target, _boards.Board):
        board = target
    else:
        board = _boards.find_board(target) if target else None  # an unknown board fails before any work
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise McuzooError(f"--plot wants a .png file name, got {plot}")
    t0 = time.perf_counter()
    graph = load_graph(model_path)
    tflm_arena = _tflm.tflm_arena(model_path) if graph.format == "tflite" else None
    result = analyze_graph(graph, board=board, search_order=search_order, runtime=runtime, tflm_arena=tflm_arena)
    result.analysis_time_s = round(time.perf_counter() - t0, 3)
    if measure_host:
        result.host_latency_ms, result.host_runtime = measure_host_latency(model_path, graph.format, runs=host_runs)
        result.host_runs = host_runs if result.host_latency_ms is not None else 0
        result.host = host_machine() if result.host_latency_ms is not None else None
    if plot is not None:
        from .report import plot_timeline

        title = (f"{Path(model_path).name}\narena {result.activation_bytes / 1024:.2f} KiB "
                 f"({result.planner}), TFLM greedy {result.activation_baseline_bytes / 1024:.2f} KiB, "
                 f"input/output buffers included")
        result.plot_path = str(plot_timeline(result.plan, plot, title, result.activation_baseline_bytes,
                                             result.activation_lower_bound_bytes))
    return result


def analyze_graph(graph: Graph, board: _boards.Board | None = None, search_order: bool = True, *,
                  runtime: str = "tflm", tflm_arena: "_tflm.TflmArena | None" = None) -> Analysis:
    """The analysis of an already loaded :class:`Graph` (no host measurement, no plot).

    ``tflm_arena``: TFLM's arena for the graph's .tflite (:func:`.tflm.tflm_arena`); without
    it a ``runtime="tflm"`` fit falls back to the cards' convention and says so.
    """
    t0 = time.perf_counter()
    base_order = list(range(len(graph.ops)))
    p = _plans(graph, base_order, search_order)
    best = p.best
    latency_board = board or _boards.find_board(REFERENCE_BOARD)
    flash = graph.weights_bytes + graph.quant_params_bytes
    note = None
    if runtime == "tflm" and tflm_arena is None:
        note = (f"TFLM runs .tflite models only: the fits of this .{graph.format} model use the cards' convention "
                "(activation arena, runtime RAM apart)")
        runtime = "cards"
    fit_arena = tflm_arena.arena_bytes if runtime == "tflm" and tflm_arena is not None else best.arena
    fits = _board_fits(graph, board, fit_arena, flash, runtime)
    return Analysis(
        model=graph.path,
        format=graph.format,
        params=int(graph.params),
        macs=int(graph.macs),
        weights_bytes=int(graph.weights_bytes),
        quant_params_bytes=int(graph.quant_params_bytes),
        flash_bytes=int(flash),
        activation_bytes=int(best.arena),
        activation_baseline_bytes=int(p.baseline.arena),
        activation_lower_bound_bytes=int(p.lower_bound),
        activation_lower_bound_best_order_bytes=int(p.lower_bound_best_order),
        input_bytes=int(sum(graph.tensors[t].nbytes for t in graph.inputs)),
        output_bytes=int(sum(graph.tensors[t].nbytes for t in graph.outputs)),
        planner=best.method,
        reordered=best.order != base_order,
        execution_order=list(best.order),
        layers=_layer_rows(graph, best, latency_board),
        boards=fits,
        fits_on=[name for name, f in fits.items() if f["fits"]],
        target=fits[board.name] if board else None,
        latency_board=latency_board.name,
        host_latency_ms=None,
        host_runtime=None,
        host_runs=0,
        analysis_time_s=round(time.perf_counter() - t0, 3),
        memory_plan=_plan_rows(best),
        runtime=runtime,
        runtime_note=note,
        tflm_arena_bytes=None if tflm_arena is None else int(tflm_arena.arena_bytes),
        tflm_arena=None if tflm_arena is None else tflm_arena.to_json(),
        plan=best,
    )


@dataclass
class _Plans:
    """The arena plans of a graph: TFLM's greedy ``baseline`` on the model's order, the ``best`` plan (ours,
    or the baseline where ours is not smaller), the ``lower_bound`` of the best plan's order and the lowest
    lower bound of all the orders tried (``lower_bound_best_order``)."""

    baseline: _planner.Plan
    best: _planner.Plan
    lower_bound: int
    lower_bound_best_order: int


def _plans(graph: Graph, base_order: list[int], search_order: bool) -> _Plans:
    """Plan the model's order and, with ``search_order``, the orders :func:`.planner.search_orders` finds."""
    base_buffers = _planner.lifetimes(graph, base_order, alias_reshapes=False)
    baseline = _planner.tflm_greedy(base_buffers)
    baseline.order = base_order
    orders = _planner.search_orders(graph) if search_order else [(0, base_order)]
    if all(o != base_order for _, o in orders):
        orders.append((0, base_order))
    best, best_lb, lb_best_order = None, None, None
    for _, order in orders:
        bufs = _planner.lifetimes(graph, order, alias_reshapes=True)
        lb = _planner.lower_bound(bufs)
        lb_best_order = lb if lb_best_order is None else min(lb_best_order, lb)
        plan = _planner.plan_offsets(bufs)
        plan.order = list(order)
        if best is None or plan.arena < best.arena or (plan.arena == best.arena and order == base_order):
            best, best_lb = plan, lb
    assert best is not None and best_lb is not None and lb_best_order is not None  # orders holds base_order
    if baseline.arena < best.arena:  # ours never does worse than the baseline
        best, best_lb = baseline, _planner.lower_bound(base_buffers)
    return _Plans(baseline, best, best_lb, min(lb_best_order, best_lb))


def _layer_rows(graph: Graph, best: _planner.Plan, latency_board: _boards.Board) -> list[dict]:
    """One row per operator (model order), with the live bytes at that operator in the chosen order."""
    pos = {op_i: p for p, op_i in enumerate(best.order)}
    live = _planner.live_bytes_per_op(best.buffers)
    layers = []
    for op in graph.ops:
        outs = [t for t in op.outputs if t in graph.tensors and not graph.tensors[t].const]
        shape = graph.tensors[outs[0]].shape if outs else ()
        layers.append({
            "name": op.name,
            "op": op.op_type,
            "kind": op.kind,
            "output_shape": list(shape[1:] if len(shape) > 1 else shape),
            "params": int(op.params),
            "macs": int(op.macs),
            "weight_bytes": int(op.weight_bytes),
            "activation_bytes": int(sum(graph.tensors[t].nbytes for t in outs)),
            "live_bytes": int(live[pos[op.index]]) if pos[op.index] < len(live) else 0,
            "latency_ms_estimate": round(_boards.layer_cycles(graph, op, latency_board.core) / (latency_board.mhz * 1e3), 4),
        })
    return layers


def _board_fits(graph: Graph, board: _boards.Board | None, fit_arena: int, flash: int, runtime: str) -> dict[str, dict]:
    """The fit on every known board, and on ``board`` when it is a custom one."""
    features = _boards.latency_features(graph)
    board_list = list(_boards.BOARDS)
    if board is not None and board not in board_list:
        board_list.append(board)
    return {b.name: _boards.board_fit(b, fit_arena, flash, features, runtime=runtime) for b in board_list}


def _plan_rows(best: _planner.Plan) -> list[dict]:
    """The memory plan as JSON rows: each buffer with its tensors, size, offset and lifetime."""
    return [
        {"buffer": b.name, "tensors": list(b.tensors), "size": b.size, "offset": o, "first_op": best.order[b.first] if b.first < len(best.order) else b.first,
         "first": b.first, "last": b.last}
        for b, o in zip(best.buffers, best.offsets)
    ]


def host_machine() -> dict:
    """The CPU model, the cores this process may use and the OS: where a host latency was measured."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": f"{cores} cores", "system": f"{platform.system()} {platform.release()}"}


def measure_host_latency(model_path, fmt: str, runs: int = 20, warmup: int = 3) -> tuple[float | None, str | None]:
    """Median wall time (ms) of one batch-1 inference on this machine: LiteRT (.tflite), ONNX Runtime (.onnx).

    Returns (None, None) for .keras (not measured) and when the runtime cannot run the model.
    """
    import numpy as np

    rng = np.random.default_rng(0)

    def rand(shape, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            return rng.integers(max(info.min, -128), min(info.max, 255) + 1, size=shape).astype(dtype)
        return rng.random(shape, dtype=np.float32).astype(dtype)

    try:
        if fmt == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            from ..console import captured_output
            from ..runtime import probe_tflite

            probe_tflite(Path(model_path).read_bytes(), model_path)  # cached: load_graph probed it already
            with captured_output():  # LiteRT prints an INFO line when it applies XNNPACK
                it = Interpreter(model_path=str(model_path))
                it.allocate_tensors()
            for d in it.get_input_details():
                it.set_tensor(d["index"], rand(tuple(int(s) for s in d["shape"]), d["dtype"]))
            run, runtime = it.invoke, "LiteRT"
        elif fmt == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
            types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
                     "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float16)": np.float16}
            feeds = {i.name: rand(tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape), types.get(i.type, np.float32))
                     for i in sess.get_inputs()}

            def run():
                sess.run(None, feeds)

            runtime = "ONNX Runtime"
        else:
            return None, None
        for _ in range(warmup):
            run()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            run()
            times.append((time.perf_counter() - t) * 1e3)
        return round(statistics.median(times), 4), runtime
    except Exception:  # noqa: BLE001 - a model that analyzes but does not run here: no host figure
        return None, None


# -- CLI ---------------------------------------------------------------------------------------
def register_cli(subparsers) -> None:
    """Add ``analyze MODEL [--target BOARD] [--runtime R] [--board-file YAML | --ram ...] [--json] [--plot PNG]``."""
    p = subparsers.add_parser(
        "analyze",
        help="parameters, MACs, flash, activation RAM (planned arena), TFLM's tensor arena and board fits of a "
             ".tflite, .onnx or .keras model",
    )
    p.add_argument("model", help="model file (.tflite, .onnx, .keras)")
    p.add_argument("--target", metavar="BOARD", default=None,
                   help="board or series to check, e.g. STM32H747, STM32F769, STM32U5 (default: report every board); "
                        "with --ram: the name of your board")
    p.add_argument("--runtime", metavar="RUNTIME", default="tflm",
                   help="what the board fits count: tflm (default: TensorFlow Lite Micro's whole tensor arena, "
                        "tflm_arena_bytes) or cards (the cards' convention: activations with input and output, "
                        "plus the runtime's RAM apart)")
    p.add_argument("--board-file", metavar="YAML", default=None,
                   help="your own board: a YAML file with core, mhz, flash and ram (regions), see README")
    p.add_argument("--ram", metavar="REGIONS", default=None,
                   help="your own board's RAM regions, e.g. SRAM1=192KiB,SRAM2=64KiB (with --core and --mhz)")
    p.add_argument("--flash", metavar="SIZE", default=None, help="your own board's flash, e.g. 1MiB (default: no limit)")
    p.add_argument("--core", metavar="CORE", default=None,
                   help="your own board's core: cortex-m7, cortex-m33, cortex-m4, cortex-a7 or cortex-a35")
    p.add_argument("--mhz", metavar="MHZ", default=None, help="your own board's core clock in MHz")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON on stdout")
    p.add_argument("--plot", metavar="PNG", default=None, help="write the activation memory timeline to this PNG")
    p.add_argument("--no-host-latency", dest="host", action="store_false", help="do not time the model on this machine")
    p.set_defaults(fn=cmd_analyze)


def board_from_args(args) -> "str | _boards.Board | None":
    """The target of ``mcuzoo analyze``: a board name, a board file, or a board from --ram/--flash/--core/--mhz."""
    inline = {k: getattr(args, k, None) for k in ("ram", "flash", "core", "mhz")}
    board_file = getattr(args, "board_file", None)
    if board_file is not None:
        given = [f"--{k}" for k, v in inline.items() if v is not None] + (["--target"] if args.target else [])
        if given:
            raise McuzooError(f"--board-file describes the board: drop {', '.join(given)}")
        return _boards.load_board_file(board_file)
    if any(v is not None for v in inline.values()):
        missing = [f"--{k}" for k in ("ram", "core", "mhz") if inline[k] is None]
        if missing:
            raise McuzooError(f"a board described on the command line needs --ram, --core and --mhz (missing: "
                              f"{', '.join(missing)}; --flash is optional)")
        return _boards.custom_board(args.target, ram=inline["ram"], flash=inline["flash"], core=inline["core"],
                                    mhz=inline["mhz"], series="custom")
    return args.target


def cmd_analyze(args) -> int:
    result = analyze(args.model, target=board_from_args(args), plot=args.plot, runtime=args.runtime,
                     measure_host=getattr(args, "host", True))
    if args.json:
        from ..rundir import json_text

        print(json_text(result.to_json()))
    else:
        from ..console import result_console

        from .report import render

        out = result_console()  # piped: as wide as the table needs; numbers never cut
        render(result, out)
    return 0
