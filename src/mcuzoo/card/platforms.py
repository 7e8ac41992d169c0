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
        if fits and b.get("warning"):
            mark += " *"
        flash = b.get("flash_headroom_bytes", "missing")
        flash_s = "no flash limit" if flash is None else (NOT_MEASURED if flash == "missing" else _size(flash))
        rows.append([b.get("series", "-"), name, core, mark, _size(b.get("ram_headroom_bytes")), flash_s])
    notes = [
        "Supported `[x]`: the int8 model fits the board according to mcuzoo's analysis: activation arena "
        "(input/output buffers included) plus the runtime's RAM within the board's RAM, and weights plus "
        "inference code within its flash. Headroom is what is left (negative: missing). These are mcuzoo's "
        "estimates, not STM32Cube.AI measurements.",
    ]
    warned = [f"{n}: {b['warning']}" for n, b in boards.items() if isinstance(b, dict) and b.get("fits") and b.get("warning")]
    notes += [f"\\* {w}" for w in warned]
    fits_on = ctx.a.get("fits_on")
    if isinstance(fits_on, list):
        notes.append("Fits on: " + (", ".join(fits_on) if fits_on else "none of the known boards") + ".")
    return (f"{head}\n\n"
            + _table(["Platform", "Board", "Core", "Supported", "RAM headroom", "Flash headroom"], rows)
            + "\n\n" + "\n\n".join(notes))
