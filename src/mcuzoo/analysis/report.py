"""Human output of an analysis: a rich per-layer table, totals, board fits, and a PNG memory timeline."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import McuzooError

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["kib", "render", "plot_timeline"]


def kib(n: int | float | None) -> str:
    """Bytes as KiB (MiB from 10 MiB on)."""
    if n is None:
        return "-"
    if abs(n) >= 10 * 1024 * 1024:
        return f"{n / 1024 / 1024:,.1f} MiB"
    return f"{n / 1024:,.2f} KiB"


def _count(n: int) -> str:
    return f"{n:,}"


def render(analysis, console) -> None:
    """Print the per-layer table, the totals and the board fits of ``analysis`` on a rich console."""
    a = analysis
    console.print(_layer_table(a))
    _print_totals(a, console)
    console.print(_board_table(a))
    for n, f in a.boards.items():
        if f.get("note"):
            console.print(f"[yellow]*[/] {n}: {f['note']}")
    if a.target:
        t = a.target
        verdict = "[green]fits[/]" if t["fits"] else "[red]does not fit[/]"
        console.print(
            f"[bold]{t['board']}[/]: {verdict} -- RAM headroom {kib(t['ram_headroom_bytes'])} in {t['ram_region']}, "
            f"flash headroom "
            f"{'no limit' if t['flash_headroom_bytes'] is None else kib(t['flash_headroom_bytes'])}, "
            f"~{t['latency_ms_estimate']:.2f} ms estimated"
        )
    console.print("fits on: " + (", ".join(a.fits_on) if a.fits_on else "none of the known boards"))
    if a.plot_path:
        console.print(f"memory timeline: {a.plot_path}")


def _layer_table(a) -> Table:
    """The per-layer table: shape, parameters, MACs, bytes and the latency estimate of every operator."""
    from rich.console import JustifyMethod
    from rich.table import Table

    table = Table(title=f"{Path(a.model).name} ({a.format}, {len(a.layers)} layers)", title_justify="left")
    just: JustifyMethod
    for col, just in (
        ("#", "right"),
        ("layer", "left"),
        ("op", "left"),
        ("output", "left"),
        ("params", "right"),
        ("MACs", "right"),
        ("weights", "right"),
        ("output act.", "right"),
        ("live at op", "right"),
        (f"ms ({a.latency_board})", "right"),
    ):
        table.add_column(col, justify=just, no_wrap=col not in ("layer",))
    for i, row in enumerate(a.layers):
        table.add_row(
            str(i),
            row["name"][:48],
            row["op"],
            "x".join(map(str, row["output_shape"])),
            _count(row["params"]) if row["params"] else "",
            _count(row["macs"]) if row["macs"] else "",
            kib(row["weight_bytes"]) if row["weight_bytes"] else "",
            kib(row["activation_bytes"]),
            kib(row["live_bytes"]),
            f"{row['latency_ms_estimate']:.3f}",
        )
    return table


def _print_totals(a, console) -> None:
    """The totals: counts and flash, the activation RAM of each planner, TFLM's arena, the host latency."""
    console.print(
        f"[bold]totals[/]: {a.params:,} parameters, {a.macs:,} MACs, weights flash {kib(a.weights_bytes)} "
        f"(+ {kib(a.quant_params_bytes)} quantization parameters = {kib(a.flash_bytes)})"
    )
    order = "execution order searched" + (", reordered" if a.reordered else ", model order kept")
    console.print(
        f"[bold]activation RAM (cards' convention: activations, input and output inside)[/]: "
        f"{kib(a.activation_bytes)} (ours: {a.planner}; {order}), "
        f"TFLM greedy {kib(a.activation_baseline_bytes)}, lower bound {kib(a.activation_lower_bound_bytes)} "
        f"(best order {kib(a.activation_lower_bound_best_order_bytes)})"
    )
    console.print(
        f"input ({kib(a.input_bytes)}) and output ({kib(a.output_bytes)}) buffers are counted in the activation "
        f"arena (the cards' 'input/output allocated' convention); 16-byte aligned buffers, no kernel scratch"
    )
    if a.tflm_arena_bytes is not None:
        t = a.tflm_arena or {}
        console.print(
            f"[bold]TFLM tensor arena (tflm_arena_bytes)[/]: {kib(a.tflm_arena_bytes)} = planned tensors "
            f"{kib(t.get('planned_bytes', 0))} + persistent {kib(t.get('persistent_bytes', 0))} (tensor and node "
            f"structs {kib(t.get('tensor_structs_bytes', 0) + t.get('node_structs_bytes', 0))}, kernel data "
            f"{kib(t.get('kernel_persistent_bytes', 0))}, input/output tensors {kib(t.get('io_tensor_bytes', 0))})"
            + ("" if t.get("binding") == "final" else f", set by the {t.get('binding')} peak")
            + "; the arena_size TensorFlow Lite Micro needs for this model"
        )
    fit_what = ("TFLM's tensor arena (tflm_arena_bytes)" if a.runtime == "tflm"
                else "the cards' convention (activation RAM; runtime RAM apart)")
    console.print(f"board fits count [bold]{fit_what}[/] (runtime {a.runtime}) in one RAM region"
                  + (f" -- {a.runtime_note}" if a.runtime_note else ""))
    if a.host_latency_ms is not None:
        console.print(f"host latency ({a.host_runtime}, batch 1, median of {a.host_runs} runs): {a.host_latency_ms:.3f} ms")


def _board_table(a) -> Table:
    """The boards table: fit, RAM region, headroom and latency estimate on every board."""
    from rich.table import Table

    boards = Table(title="boards", title_justify="left")
    for col in ("board", "core", "fits", "RAM region", "RAM headroom", "flash headroom", "latency (est.)"):
        boards.add_column(col, justify="left" if col in ("board", "core", "fits", "RAM region") else "right")
    for name, fit in a.boards.items():
        mark = "[green]yes[/]" if fit["fits"] else "[red]no[/]"
        if fit.get("note"):
            mark += " [yellow]*[/]"
        lat = f"{fit['latency_ms_estimate']:.2f} ms" + ("" if fit["latency_calibrated"] else " (uncal.)")
        boards.add_row(
            f"{name} @ {fit['mhz']} MHz" + (" (yours)" if fit.get("custom") else ""), fit["core"], mark,
            f"{fit['ram_region']} ({kib(fit['ram_region_bytes'])})", kib(fit["ram_headroom_bytes"]),
            "no limit" if fit["flash_headroom_bytes"] is None else kib(fit["flash_headroom_bytes"]), lat,
        )
    return boards


def plot_timeline(plan, path: str | Path, title: str = "", baseline_bytes: int | None = None, lower_bound_bytes: int | None = None) -> Path:
    """PNG of ``plan``: buffers as rectangles (x: operator range, y: offset range), arena line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise McuzooError(f"--plot wants a .png file name, got {path}")
    n_ops = max((b.last for b in plan.buffers), default=0) + 1
    arena = plan.arena
    fig, ax = plt.subplots(figsize=(min(24, 6 + n_ops * 0.08), 6), dpi=110)
    cmap = plt.get_cmap("tab20")
    for k, (b, off) in enumerate(zip(plan.buffers, plan.offsets)):
        rect = Rectangle((b.first - 0.45, off / 1024), b.last - b.first + 0.9, b.size / 1024,
                         facecolor=cmap(k % 20), edgecolor="black", linewidth=0.4, alpha=0.85)
        ax.add_patch(rect)
        if b.size >= arena * 0.06 and (b.last - b.first + 1) >= max(1, n_ops // 40):
            label = b.name.split(";")[0].split("/")[-2 if b.name.count("/") >= 2 else -1][:24]
            ax.text(b.first - 0.4, (off + b.size / 2) / 1024, label, fontsize=6, va="center", ha="left", clip_on=True)
    ax.axhline(arena / 1024, color="red", linestyle="--", linewidth=1, label=f"arena {arena / 1024:.2f} KiB")
    if baseline_bytes and baseline_bytes != arena:
        ax.axhline(baseline_bytes / 1024, color="gray", linestyle=":", linewidth=1, label=f"TFLM greedy {baseline_bytes / 1024:.2f} KiB")
    if lower_bound_bytes:
        ax.axhline(lower_bound_bytes / 1024, color="green", linestyle="-.", linewidth=0.8, label=f"lower bound {lower_bound_bytes / 1024:.2f} KiB")
    top = max(arena, baseline_bytes or 0)
    ax.set_xlim(-1, n_ops)
    ax.set_ylim(0, top / 1024 * 1.08 + 0.01)
    ax.set_xlabel("operator (execution order)")
    ax.set_ylabel("arena offset (KiB)")
    ax.set_title(title or "activation memory timeline", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    from ..plots import save_figure

    return save_figure(fig, path)
