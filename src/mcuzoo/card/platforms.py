"""Recommended platforms: the boards the int8 model fits, with their headroom (from ``analysis.json``)."""
from __future__ import annotations

from .context import Context
from .text import NOT_MEASURED, _get, _size, _table


def platforms(ctx: Context) -> str:
    head = "## Recommended platforms"
    boards = _get(ctx.a, "boards")
    if not isinstance(boards, dict) or not boards:
        return f"{head}\n\nNot analysed ({ctx.no_analysis()})."
    rows = []
    for name, b in boards.items():
        b = b if isinstance(b, dict) else {}
        core = str(b.get("core", "")).replace("cortex-", "Cortex-").replace("Cortex-m", "Cortex-M").replace("Cortex-a", "Cortex-A")
        core = f"{core} @ {b['mhz']} MHz" if b.get("mhz") else core or "-"
        fits = b.get("fits")
        mark = "[x]" if fits else "[]" if fits is not None else NOT_MEASURED
        if b.get("note") or (fits and b.get("warning")):
            mark += " *"
        flash = b.get("flash_headroom_bytes", "missing")
        flash_s = "no flash limit" if flash is None else (NOT_MEASURED if flash == "missing" else _size(flash))
        ram_s = _size(b.get("ram_headroom_bytes"))
        if b.get("ram_region"):
            ram_s += f" in {b['ram_region']}"
        rows.append([b.get("series", "-"), name, core, mark, ram_s, flash_s])
    runtimes = {b.get("runtime") for b in boards.values() if isinstance(b, dict)}
    if runtimes == {"tflm"}:
        ram_rule = ("TensorFlow Lite Micro's whole tensor arena (see the memory footprint) within one RAM region "
                    "of the board (a tensor arena is one contiguous block)")
    elif runtimes == {"cards"}:
        ram_rule = ("the activation arena (input/output buffers included) within one RAM region of the board and "
                    "the runtime's RAM within the rest")
    else:  # analyses written before RAM regions
        ram_rule = "activation arena (input/output buffers included) plus the runtime's RAM within the board's RAM"
    notes = [
        f"Supported `[x]`: the int8 model fits the board according to mcuzoo's analysis: {ram_rule}, and weights "
        "plus inference code within its flash. RAM headroom is what is left in the region named (negative: "
        "missing). These are mcuzoo's estimates, not STM32Cube.AI measurements.",
    ]
    warned = [f"{n}: {b.get('note') or b['warning']}" for n, b in boards.items()
              if isinstance(b, dict) and (b.get("note") or (b.get("fits") and b.get("warning")))]
    notes += [f"\\* {w}" for w in warned]
    fits_on = (ctx.a or {}).get("fits_on")
    if isinstance(fits_on, list):
        notes.append("Fits on: " + (", ".join(fits_on) if fits_on else "none of the known boards") + ".")
    return (f"{head}\n\n"
            + _table(["Platform", "Board", "Core", "Supported", "RAM headroom", "Flash headroom"], rows)
            + "\n\n" + "\n\n".join(notes))
