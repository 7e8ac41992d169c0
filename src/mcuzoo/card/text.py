"""Small formatting helpers of the card: sizes, percentages, times, Markdown tables; "not measured" for a missing figure."""
from __future__ import annotations

import re

NOT_MEASURED = "not measured"


def _kib(n) -> str:
    return NOT_MEASURED if n is None else f"{float(n) / 1024:,.2f} KiB"


def _size(n) -> str:
    """KiB up to 10 MiB, then MiB / GiB (headroom on MPU boards with DDR)."""
    if n is None:
        return NOT_MEASURED
    n = float(n)
    if abs(n) >= 10 * 2**30:
        return f"{n / 2**30:,.2f} GiB"
    if abs(n) >= 10 * 2**20:
        return f"{n / 2**20:,.2f} MiB"
    return f"{n / 1024:,.2f} KiB"


def _int(n) -> str:
    return NOT_MEASURED if n is None else f"{int(n):,}"


def _pct(x, digits: int = 2) -> str:
    return NOT_MEASURED if x is None else f"{100 * float(x):.{digits}f}"


def _ms(x) -> str:
    if x is None:
        return NOT_MEASURED
    x = float(x)
    return f"{x:.3f} ms" if x < 10 else f"{x:.2f} ms" if x < 1000 else f"{x:,.0f} ms"


def _affine(rescale, offset) -> str:
    """``pixel * 0.00784314 - 1`` for a rescale and an offset."""
    r, o = float(rescale), float(offset or 0.0)
    text = f"pixel * {r:.6g}"
    if o:
        text += f" {'-' if o < 0 else '+'} {abs(o):.6g}"
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _code(value) -> str:
    """``value`` (a class name, a path, a file name: text from the run's files) as one inline code span that
    nothing in it can end or break: control characters and newlines become spaces, and the fence is longer
    than any run of backticks inside."""
    text = _CONTROL.sub(" ", str(value))
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(v) -> str:
        return _CONTROL.sub(" ", str(v)).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("-" * (len(h) + 2) for h in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d
