"""Performances: the metrics' meaning, the MCU memory footprint and the inference times (from ``analysis.json``)."""
from __future__ import annotations

from .. import rundir
from .context import Context
from .text import NOT_MEASURED, _get, _kib, _ms, _table


def metrics_intro(ctx: Context) -> str:
    return (
        "## Metrics\n\n"
        "* Memory footprints and MCU inference times are **estimates** by mcuzoo's analysis of the int8 "
        "graph (`mcuzoo analyze`: its own memory planner and a latency model fitted on the reference cards), "
        "not STM32Cube.AI / STEdgeAI measurements on a board. Host latency is **measured** on the machine "
        "named in its row.\n\n"
        "* `tfs` stands for \"training from scratch\", meaning that the model weights were randomly initialized "
        "before training."
    )


def memory(ctx: Context) -> str:
    head = f"### Reference **MCU** memory footprint based on {ctx.dataset_title} (estimate, see Accuracy for details on dataset)"
    a = ctx.a
    if not a or a.get("activation_bytes") is None and a.get("weights_bytes") is None:
        return f"{head}\n\nMemory footprint: {NOT_MEASURED} ({ctx.no_analysis()})."
    tflm = a.get("tflm_arena_bytes")
    rows = [[ctx.tag, "Int8", ctx.res, _kib(a.get("activation_bytes")), _kib(a.get("weights_bytes")),
             _kib(tflm) if tflm is not None else NOT_MEASURED, _kib(a.get("activation_baseline_bytes")),
             _kib(a.get("activation_lower_bound_bytes")), "mcuzoo estimate"]]
    table = _table(["Model", "Format", "Resolution", "Activation RAM (cards' convention)", "Weights Flash",
                    "TFLM tensor arena", "TFLM greedy plan", "Arena lower bound", "Source"], rows)
    notes = []
    if tflm is not None:
        t = a.get("tflm_arena") or {}
        parts = ""
        if t.get("planned_bytes") is not None and t.get("persistent_bytes") is not None:
            parts = f" ({_kib(t['planned_bytes'])} of planned tensors + {_kib(t['persistent_bytes'])} persistent)"
        notes.append(f"*TFLM tensor arena* is the `arena_size` a TensorFlow Lite Micro build needs{parts}: the "
                     "planned tensors, TFLM's persistent buffers (tensor and node structs, per-channel quantization "
                     "data, each kernel's data) and the kernels' scratch requests; mcuzoo models TFLM's allocator "
                     "and checks it against the real interpreter's smallest working arena (0-2 % above it). "
                     + ("The board fits below use it." if a.get("runtime", "tflm") == "tflm" else
                        "The board fits below use the cards' convention instead (`analysis.runtime: cards`)."))
    io_note = "counted in" if a.get("io_in_arena", True) else "not counted in"
    extra = ""
    if a.get("input_bytes") is not None and a.get("output_bytes") is not None:
        extra = f" (input {_kib(a['input_bytes'])}, output {_kib(a['output_bytes'])})"
    notes.append(f"The input and output buffers{extra} are {io_note} the activation RAM, as with STM32Cube.AI's "
                 "\"input / output allocated\" option of the reference cards.")
    planner = a.get("planner")
    notes.append("Activation RAM (the cards' convention) is the arena of mcuzoo's memory planner" + (f" (`{planner}`)" if planner else "")
                 + "; *TFLM greedy plan* is what TensorFlow Lite Micro's greedy planner would take for the same "
                 "graph, and the lower bound is the largest set of tensors alive at one operator. Kernel scratch "
                 "buffers and the runtime's own RAM are not included in these three.")
    if a.get("quant_params_bytes") is not None:
        notes.append(f"Weights flash counts the constant tensors (int8 weights, int32 biases); quantization "
                     f"parameters add {_kib(a['quant_params_bytes'])}, inference code is not included.")
    return f"{head}\n\n{table}\n\n" + "\n\n".join(notes)


def latency(ctx: Context) -> str:
    head = f"### Reference **MCU** inference time based on {ctx.dataset_title} (see Accuracy for details on dataset)"
    a = ctx.a
    boards = _get(a, "boards")
    host = _get(a, "host_latency_ms")
    if not a or (not isinstance(boards, dict) and host is None):
        return f"{head}\n\nInference time: {NOT_MEASURED} ({ctx.no_analysis()})."
    lm = a.get("latency_model") or {}
    loo, fitted = lm.get("max_abs_loo_error_pct"), lm.get("max_abs_fitted_error_pct")
    if loo is not None:
        err = f"leave-one-out error up to {float(loo):.0f} % on the reference cards' measured rows"
    elif fitted is not None:
        err = f"fitted error up to {float(fitted):.0f} % on the reference cards' measured rows (no leave-one-out error)"
    else:
        err = "error of the latency model unknown (no calibration rows in analysis.json)"
    rows = []
    uncal = False
    for name, b in (boards or {}).items():
        if not isinstance(b, dict) or b.get("latency_ms_estimate") is None:
            continue
        kind = "*estimate*"
        if b.get("latency_calibrated") is False:
            kind += " (uncalibrated core)"
            uncal = True
        mhz = f"{b['mhz']} MHz" if b.get("mhz") else "-"
        rows.append([ctx.tag, "Int8", ctx.res, name, mhz, _ms(b["latency_ms_estimate"]), kind])
    host_name = _host_name(ctx)
    for runtime, ms in _host_rows(ctx, host):
        rows.append([ctx.tag, "Int8", ctx.res, f"host: {host_name}", "-", _ms(ms),
                     f"*measured* ({runtime}, batch 1" + (f", median of {a['host_runs']} runs" if a.get("host_runs") else "") + ")"])
    if not rows:
        return f"{head}\n\nInference time: {NOT_MEASURED} (no latency figures in `{rundir.ANALYSIS}`)."
    table = _table(["Model", "Format", "Resolution", "Board", "Frequency", "Inference time (ms)", "Kind"], rows)
    notes = [f"*estimate*: mcuzoo's latency model (cycles per MAC by layer kind, per output and per layer, fitted "
             f"on the reference cards' measured times), {err}. Not a measurement on the board."]
    if uncal:
        notes.append("Uncalibrated cores have no measured reference rows: their coefficients are scaled from the "
                     "Cortex-M7 ones by CoreMark/MHz and are rougher still.")
    if not _host_rows(ctx, host):
        notes.append(f"Host latency: {NOT_MEASURED}.")
    return f"{head}\n\n{table}\n\n" + "\n\n".join(notes)


def _host_rows(ctx: Context, host) -> list[tuple[str, float]]:
    if isinstance(host, dict):
        return [(str(k), float(v)) for k, v in host.items() if isinstance(v, (int, float))]
    if isinstance(host, (int, float)):
        return [(str(_get(ctx.a, "host_runtime") or "runtime not recorded"), float(host))]
    return []


def _host_name(ctx: Context) -> str:
    h = _get(ctx.a, "host")
    if isinstance(h, dict):
        parts = [str(h[k]) for k in ("cpu", "processor", "machine", "system", "platform", "cores", "threads")
                 if h.get(k) not in (None, "")]
        return ", ".join(parts) or "machine not recorded"
    if isinstance(h, str) and h.strip():
        return h.strip()
    return "machine not recorded in analysis.json"
