"""STM32 boards and series: memory, and a latency model fitted on the model cards.

**Boards.** :data:`BOARDS` lists the boards of the cards and one board per
series the cards recommend: core, clock, flash and RAM as its *regions* (the
separate blocks of the memory map; adjacent blocks that form one contiguous
range are one region). A tensor arena is one contiguous block, so it must fit
in one region: on the STM32H747 the largest is the 512 KiB AXI SRAM, not the
1 MiB in total. A model *fits* (:func:`board_fit`) when

- RAM, ``runtime="tflm"`` (the default): TensorFlow Lite Micro's whole tensor
  arena (:func:`mcuzoo.analysis.tflm.tflm_arena_bytes`: planned tensors, its
  persistent buffers and the kernels' requests) fits in one region; the headroom
  is that region's;
- RAM, ``runtime="cards"``: the cards' convention -- the activation arena
  (input/output buffers included) fits in one region, and the runtime's own
  state (:data:`RUNTIME_RAM_BYTES`: the cards list 4.5 to 20 KiB) in what is
  left of the board's RAM;
- flash: weights + quantization parameters + :data:`CODE_FLASH_BYTES` (the
  inference code: the cards list 47 to 101 KiB) <= the board's flash.

MPUs (STM32MP1/MP2) run Linux from DDR and an SD card: flash is not a limit.

**Your own board.** :func:`load_board_file` reads a small YAML file::

    name: MyBoard            # optional (default: the file's name)
    core: cortex-m4          # a latency family: cortex-m7, cortex-m33, cortex-m4, cortex-a7, cortex-a35
    mhz: 80
    flash: 1 MiB             # bytes, or a size with B, KiB, MiB, GiB (K, M, G, KB, MB, GB too); null: no limit
    ram:                     # the RAM regions: name and size
      SRAM1: 192 KiB
      SRAM2: 64 KiB

and :func:`custom_board` builds the same from values (the CLI's ``--ram
SRAM1=192KiB,SRAM2=64KiB --flash 1MiB --core cortex-m4 --mhz 80``).

**Latency.** Cycles of one inference are a sum over layers::

    cycles = sum(cycles_per_mac[kind] * macs            # conv kxk, conv 1x1, depthwise, fc
                 + cycles_per_output * output elements  # requantization, for layers with MACs
                 + cycles_per_element * elements         # every other layer (pool, add, mul, ...)
                 + cycles_per_layer)                     # call overhead

with one coefficient set per core family, ``ms = cycles / MHz / 1000``. The
coefficients are fitted by non-negative least squares on the relative error of
the cards' measured rows (:data:`CALIBRATION`), with a weak pull (weight
:data:`RIDGE`) towards round ballpark priors (:data:`PRIORS`): six rows of three
architectures cannot pin seven coefficients alone, and the pull keeps the ones
the data cannot see at plausible values instead of zero. Cortex-M7 is fitted on
the six STM32H747/STM32F769 rows, Cortex-A7 on the four STM32MP157 rows (TFLite,
2 cores), Cortex-A35 is the A7 set scaled by one factor fitted on its single row.
Cortex-M4 and M33 have no measured rows: their coefficients are the M7's scaled
by the CoreMark/MHz ratio (M7 5.01, M33 4.02, M4 3.42); estimates for them are
marked uncalibrated.

:func:`leave_one_out` refits without each row in turn and predicts it: that
error, not the fitted one, says how far to trust an estimate for a new model.
``python benchmarks/analysis_benchmark.py --refit`` rebuilds the seed models,
recomputes the rows' features and rewrites the FITTED block below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import McuzooError, first_line

__all__ = [
    "Board",
    "RamRegion",
    "BOARDS",
    "RUNTIMES",
    "find_board",
    "board_fit",
    "custom_board",
    "load_board_file",
    "parse_size",
    "parse_regions",
    "latency_features",
    "estimate_cycles",
    "estimate_ms",
    "layer_cycles",
    "fit_coefficients",
    "leave_one_out",
    "latency_model_report",
    "CALIBRATION",
    "COEFFICIENTS",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

RUNTIME_RAM_BYTES = 16 * KiB
CODE_FLASH_BYTES = 100 * KiB

# Markers of the block that benchmarks/analysis_benchmark.py --refit rewrites (built so that
# these lines do not contain them).
MARK_BEGIN = "# " + "BEGIN FITTED"
MARK_END = "# " + "END FITTED"


#: What the RAM fit counts (see the module docstring).
RUNTIMES = ("tflm", "cards")

HOW_TO_ADD_A_BOARD = ("describe your board in a YAML file and pass --board-file BOARD.yaml (keys: name, core, mhz, "
                      "flash, ram: {REGION: SIZE, ...}), or give --ram REGION=SIZE,... --flash SIZE --core CORE --mhz MHZ")


@dataclass(frozen=True)
class RamRegion:
    """One contiguous block of RAM."""

    name: str
    bytes: int


@dataclass(frozen=True)
class Board:
    name: str
    series: str
    core: str  # latency family: cortex-m7, cortex-m33, cortex-m4, cortex-a7, cortex-a35
    mhz: int
    ram: tuple[RamRegion, ...]  # the regions, largest first is not required
    flash_bytes: int | None  # None: no flash limit (MPU booting from SD card / eMMC)
    kit: str = ""
    aliases: tuple[str, ...] = ()
    custom: bool = False  # described by the user (--board-file / --ram ...)

    @property
    def ram_bytes(self) -> int:
        return sum(r.bytes for r in self.ram)

    @property
    def largest_region(self) -> RamRegion:
        return max(self.ram, key=lambda r: r.bytes)

    def to_json(self) -> dict:
        return {"name": self.name, "series": self.series, "core": self.core, "mhz": self.mhz,
                "flash_bytes": self.flash_bytes, "ram": {r.name: r.bytes for r in self.ram}, "custom": self.custom}


def _r(*regions: tuple[str, int]) -> tuple[RamRegion, ...]:
    return tuple(RamRegion(n, b) for n, b in regions)


# RAM regions from the reference manuals' memory maps (ITCM and backup SRAM left out: code and
# battery-backed data). Blocks at adjacent addresses form one region.
BOARDS: list[Board] = [
    Board("STM32H747", "STM32H7", "cortex-m7", 400,
          _r(("AXI SRAM", 512 * KiB), ("SRAM1-3 (D2)", 288 * KiB), ("DTCM", 128 * KiB), ("SRAM4 (D3)", 64 * KiB)),
          2 * MiB, "STM32H747I-DISCO", ("h747", "stm32h747i-disco")),
    Board("STM32F769", "STM32F7", "cortex-m7", 216,
          _r(("DTCM + SRAM1 + SRAM2", 512 * KiB)),
          2 * MiB, "STM32F769I-DISCO", ("f769", "stm32f769i-disco", "stm32f7")),
    Board("STM32H743", "STM32H7", "cortex-m7", 480,
          _r(("AXI SRAM", 512 * KiB), ("SRAM1-3 (D2)", 288 * KiB), ("DTCM", 128 * KiB), ("SRAM4 (D3)", 64 * KiB)),
          2 * MiB, "NUCLEO-H743ZI2 (generic STM32H7)", ("h743", "stm32h7", "h7")),
    Board("STM32U585", "STM32U5", "cortex-m33", 160,
          _r(("SRAM1-3", 768 * KiB), ("SRAM4", 16 * KiB)),
          2 * MiB, "B-U585I-IOT02A", ("u585", "stm32u5", "u5")),
    Board("STM32L4R9", "STM32L4", "cortex-m4", 120,
          _r(("SRAM1-3", 640 * KiB)),
          2 * MiB, "32L4R9IDISCOVERY", ("l4r9", "stm32l4", "l4")),
    Board("STM32MP157", "STM32MP1", "cortex-a7", 800, _r(("DDR", 512 * MiB)), None,
          "STM32MP157F-DK2 (2 cores)", ("mp157", "stm32mp1", "mp1", "stm32mp157f-dk2")),
    Board("STM32MP257", "STM32MP2", "cortex-a35", 1500, _r(("DDR", 4 * GiB)), None,
          "STM32MP257F-DK (2 cores)", ("mp257", "stm32mp2", "mp2", "stm32mp257f-dk")),
]


def find_board(name: str) -> Board:
    """A board by name, kit name, series or short alias (case-insensitive); McuzooError if unknown."""
    key = str(name).strip().lower()
    for b in BOARDS:
        if key in (b.name.lower(), b.kit.lower(), *b.aliases):
            return b
    known = ", ".join(b.name for b in BOARDS)
    raise McuzooError(f"unknown board '{name}' (known: {known}; series names such as STM32H7 work too). "
                      f"To add your own, {HOW_TO_ADD_A_BOARD}")


# -- custom boards ------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB, "mib": MiB, "g": GiB, "gb": GiB, "gib": GiB}


def parse_size(value, what: str = "size") -> int:
    """Bytes from an int or a string such as ``512 KiB``, ``1MiB``, ``2M``, ``4096`` (K/KB/KiB are 1024)."""
    import re

    if isinstance(value, bool):
        raise McuzooError(f"{what}: expected a size such as 512 KiB, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise McuzooError(f"{what}: expected a size such as 512 KiB, 1 MiB or 4096, got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    else:
        raise McuzooError(f"{what}: expected a size such as 512 KiB, got {value!r}")
    if n <= 0 or n > 64 * GiB:
        raise McuzooError(f"{what}: {value!r} is out of range (1 byte to 64 GiB)")
    return n


def parse_regions(spec) -> tuple[RamRegion, ...]:
    """RAM regions from ``{name: size}`` or ``"SRAM1=192KiB,SRAM2=64KiB"`` (a bare size: one region ``RAM``)."""
    if isinstance(spec, str):
        items = [p.strip() for p in spec.split(",") if p.strip()]
        pairs = []
        for i, item in enumerate(items):
            if "=" in item:
                name, size = item.split("=", 1)
            elif len(items) == 1:
                name, size = "RAM", item
            else:
                raise McuzooError(f"--ram: '{item}' should be REGION=SIZE, e.g. SRAM1=192KiB,SRAM2=64KiB")
            pairs.append((name.strip() or f"RAM{i}", size))
    elif isinstance(spec, dict):
        pairs = [(str(k), v) for k, v in spec.items()]
    elif isinstance(spec, list):  # [{name: X, size: Y}, ...]
        pairs = []
        for item in spec:
            if not isinstance(item, dict) or set(item) != {"name", "size"}:
                raise McuzooError("ram: a list of regions takes entries {name: REGION, size: SIZE}")
            pairs.append((str(item["name"]), item["size"]))
    else:
        raise McuzooError(f"ram: expected regions as {{REGION: SIZE, ...}}, got {spec!r}")
    if not pairs:
        raise McuzooError("ram: a board needs at least one RAM region")
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise McuzooError(f"ram: a region is named twice ({', '.join(names)})")
    return tuple(RamRegion(n, parse_size(v, f"ram region {n}")) for n, v in pairs)


def custom_board(name: str | None, *, ram, flash=None, core: str | None = None, mhz=None, series: str = "custom") -> Board:
    """A user-described board (see the module docstring); McuzooError naming the bad value."""
    families = sorted(COEFFICIENTS)
    core_s = str(core or "").strip().lower()
    if core_s and not core_s.startswith("cortex-"):
        core_s = "cortex-" + core_s
    if core_s not in COEFFICIENTS:
        raise McuzooError(f"board core: {core!r} is not a latency family mcuzoo knows (one of {', '.join(families)})")
    try:
        mhz_i = int(mhz)
    except (TypeError, ValueError):
        raise McuzooError(f"board mhz: expected the core clock in MHz (an integer), got {mhz!r}") from None
    if isinstance(mhz, bool) or not 1 <= mhz_i <= 10_000 or (isinstance(mhz, float) and not mhz.is_integer()):
        raise McuzooError(f"board mhz: {mhz!r} is out of range (1 to 10000)")
    flash_b = None if flash is None else parse_size(flash, "board flash")
    name = str(name or "custom").strip() or "custom"
    return Board(name, series, core_s, mhz_i, parse_regions(ram), flash_b, custom=True)


def load_board_file(path) -> Board:
    """A board from a YAML file (see the module docstring)."""
    from pathlib import Path

    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise McuzooError(f"cannot read board file {path}: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise McuzooError(f"board file {path} is not valid YAML: {first_line(e, None)}") from None
    if not isinstance(doc, dict):
        raise McuzooError(f"board file {path}: expected a mapping with keys name, core, mhz, flash, ram")
    allowed = {"name", "series", "core", "mhz", "flash", "ram"}
    extra = sorted(set(map(str, doc)) - allowed)
    if extra:
        raise McuzooError(f"board file {path}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")
    missing = [k for k in ("core", "mhz", "ram") if k not in doc]
    if missing:
        raise McuzooError(f"board file {path}: missing key {missing[0]!r} (a board needs core, mhz and ram; flash is optional)")
    try:
        return custom_board(doc.get("name") or path.stem, ram=doc["ram"], flash=doc.get("flash"), core=doc["core"],
                            mhz=doc["mhz"], series=str(doc.get("series") or "custom"))
    except McuzooError as e:
        raise McuzooError(f"board file {path}: {e}") from None


def board_fit(board: Board, arena_bytes: int, flash_bytes: int, features: dict[str, float], *,
              runtime: str = "tflm") -> dict:
    """Whether a model fits ``board``, with headroom (negative: short by) and a latency estimate.

    ``arena_bytes``: the arena the runtime needs in one contiguous block -- TFLM's
    tensor arena for ``runtime="tflm"``, the activation arena (input/output
    included) for ``runtime="cards"``, which also needs :data:`RUNTIME_RAM_BYTES`
    elsewhere. The arena goes to the largest region; the headroom is that region's.
    """
    if runtime not in RUNTIMES:
        raise McuzooError(f"unknown runtime '{runtime}' (one of {', '.join(RUNTIMES)})")
    region = board.largest_region
    arena = int(arena_bytes)
    other_ram = RUNTIME_RAM_BYTES if runtime == "cards" else 0
    ram_head = region.bytes - arena
    other_ok = board.ram_bytes - arena - other_ram >= 0
    flash_needed = int(flash_bytes) + CODE_FLASH_BYTES
    flash_head = None if board.flash_bytes is None else board.flash_bytes - flash_needed
    fits = ram_head >= 0 and other_ok and (flash_head is None or flash_head >= 0)
    out = {
        "board": board.name,
        "series": board.series,
        "core": board.core,
        "mhz": board.mhz,
        "fits": bool(fits),
        "runtime": runtime,
        "ram_bytes": board.ram_bytes,
        "ram_region": region.name,
        "ram_region_bytes": region.bytes,
        "ram_needed_bytes": arena,
        "ram_headroom_bytes": ram_head,
        "runtime_ram_bytes": other_ram,
        "flash_bytes": board.flash_bytes,
        "flash_needed_bytes": flash_needed,
        "flash_headroom_bytes": flash_head,
        "latency_ms_estimate": round(estimate_ms(features, board), 3),
        "latency_calibrated": board.core in CALIBRATED_FAMILIES,
    }
    if board.custom:
        out["custom"] = True
    if ram_head < 0 and arena + other_ram <= board.ram_bytes and len(board.ram) > 1:
        out["note"] = (f"the arena ({arena / KiB:.1f} KiB) is within the board's {board.ram_bytes / KiB:.0f} KiB of RAM "
                       f"but larger than its largest block ({region.name}, {region.bytes / KiB:.0f} KiB): "
                       "a tensor arena is one contiguous block")
    elif ram_head >= 0 and not other_ok:
        out["note"] = (f"the runtime's {other_ram / KiB:.0f} KiB do not fit beside the arena in the board's "
                       f"{board.ram_bytes / KiB:.0f} KiB of RAM")
    return out


# -- latency features -----------------------------------------------------------------------
FEATURES = ("conv", "pointwise", "depthwise", "fc", "mac_outputs", "elements", "layers")


def layer_features(graph, op) -> dict[str, float]:
    """The latency features of one operator (see the module docstring)."""
    f = dict.fromkeys(FEATURES, 0.0)
    f["layers"] = 1.0
    acts = graph.activations(op.inputs)
    outs = [graph.tensors[t].elements for t in op.outputs if t in graph.tensors]
    if op.kind in ("conv", "depthwise", "fully_connected", "conv_transpose"):
        f["mac_outputs"] = float(sum(outs))
        if op.kind == "depthwise":
            f["depthwise"] = float(op.macs)
        elif op.kind == "fully_connected":
            f["fc"] = float(op.macs)
        elif op.kernel == (1, 1):
            f["pointwise"] = float(op.macs)
        else:
            f["conv"] = float(op.macs)
    elif op.kind != "reshape":
        sizes = [graph.tensors[t].elements for t in acts] + outs
        f["elements"] = float(max(sizes, default=0))
    else:
        f["layers"] = 0.0  # reshape/dropout/identity: free
    return f


def latency_features(graph) -> dict[str, float]:
    """Sum of :func:`layer_features` over the graph."""
    total = dict.fromkeys(FEATURES, 0.0)
    for op in graph.ops:
        for k, v in layer_features(graph, op).items():
            total[k] += v
    return total


def estimate_cycles(features: dict[str, float], core: str) -> float:
    coeffs = COEFFICIENTS[core]
    return sum(coeffs[k] * features.get(k, 0.0) for k in FEATURES)


def estimate_ms(features: dict[str, float], board: Board) -> float:
    return estimate_cycles(features, board.core) / (board.mhz * 1e3)


def layer_cycles(graph, op, core: str) -> float:
    return estimate_cycles(layer_features(graph, op), core)


# -- fitting ------------------------------------------------------------------------------
#: Ballpark priors (cycles per MAC / output / element / layer) for an int8 Cortex-M7 runtime.
PRIORS = {"conv": 1.0, "pointwise": 1.5, "depthwise": 2.0, "fc": 1.0, "mac_outputs": 10.0, "elements": 30.0, "layers": 4000.0}
#: Cortex-A7 priors: half the M7's cycles (NEON, 2 cores).
PRIOR_SCALE = {"cortex-m7": 1.0, "cortex-a7": 0.5}
#: Weight of the pull towards the priors, relative to one calibration row's squared relative error.
RIDGE = 0.01
#: Uncalibrated families: the M7's cycles times the CoreMark/MHz ratio.
SCALED_FAMILIES = {"cortex-m33": ("cortex-m7", 5.01 / 4.02), "cortex-m4": ("cortex-m7", 5.01 / 3.42)}
CALIBRATED_FAMILIES = ("cortex-m7", "cortex-a7", "cortex-a35")


def fit_coefficients(rows: list[dict], core: str, ridge: float = RIDGE) -> dict[str, float]:
    """Non-negative least squares on relative errors, with a ridge towards :data:`PRIORS`.

    ``rows``: dicts with ``features``, ``mhz`` and ``measured_ms``.
    """
    import numpy as np
    from scipy.optimize import nnls

    prior = np.array([PRIORS[k] * PRIOR_SCALE.get(core, 1.0) for k in FEATURES])
    a = np.array([[r["features"][k] for k in FEATURES] for r in rows], dtype=float)
    y = np.array([r["measured_ms"] * r["mhz"] * 1e3 for r in rows], dtype=float)  # cycles
    lhs = np.vstack([a / y[:, None], math.sqrt(ridge) * np.diag(1.0 / prior)])
    rhs = np.concatenate([np.ones(len(rows)), math.sqrt(ridge) * np.ones(len(prior))])
    coef, _ = nnls(lhs, rhs)
    return {k: float(c) for k, c in zip(FEATURES, coef)}


def fit_scale(rows: list[dict], base: dict[str, float]) -> float:
    """One factor s minimising the relative errors of ``s * base`` (least squares)."""
    preds = [sum(base[k] * r["features"][k] for k in FEATURES) / (r["mhz"] * 1e3) for r in rows]
    num = sum(p / r["measured_ms"] for p, r in zip(preds, rows))
    den = sum((p / r["measured_ms"]) ** 2 for p, r in zip(preds, rows))
    return num / den if den else 1.0


def _rows(core: str) -> list[dict]:
    return [r for r in CALIBRATION if r["core"] == core]


def fit_all(calibration: list[dict] | None = None) -> dict[str, dict[str, float]]:
    """Coefficients for every family from calibration rows (default: :data:`CALIBRATION`)."""
    cal = CALIBRATION if calibration is None else calibration
    out = {}
    for core in ("cortex-m7", "cortex-a7"):
        rows = [r for r in cal if r["core"] == core]
        out[core] = fit_coefficients(rows, core)
    a35 = [r for r in cal if r["core"] == "cortex-a35"]
    s = fit_scale(a35, out["cortex-a7"]) if a35 else 0.5
    out["cortex-a35"] = {k: v * s for k, v in out["cortex-a7"].items()}
    for fam, (base, ratio) in SCALED_FAMILIES.items():
        out[fam] = {k: v * ratio for k, v in out[base].items()}
    return out


def _predict(coeffs: dict[str, float], row: dict) -> float:
    return sum(coeffs[k] * row["features"][k] for k in FEATURES) / (row["mhz"] * 1e3)


def leave_one_out(calibration: list[dict] | None = None) -> list[dict]:
    """For each calibration row: the fitted estimate and the estimate of a fit without that row."""
    cal = CALIBRATION if calibration is None else calibration
    full = fit_all(cal)
    out = []
    for i, row in enumerate(cal):
        fitted = _predict(full[row["core"]], row)
        rest = cal[:i] + cal[i + 1 :]
        if any(r["core"] == row["core"] for r in rest):
            loo = _predict(fit_all(rest)[row["core"]], row)
        else:
            loo = None  # the only row of its family: nothing left to predict it from
        out.append(
            {
                "model": row["model"],
                "input": "x".join(map(str, row["input_shape"])),
                "classes": row["classes"],
                "board": row["board"],
                "measured_ms": row["measured_ms"],
                "fitted_ms": round(fitted, 3),
                "fitted_error_pct": round(100 * (fitted - row["measured_ms"]) / row["measured_ms"], 1),
                "loo_ms": None if loo is None else round(loo, 3),
                "loo_error_pct": None if loo is None else round(100 * (loo - row["measured_ms"]) / row["measured_ms"], 1),
            }
        )
    return out


def latency_model_report() -> dict:
    """The latency model for ``to_json()``: formula, coefficients, calibration rows with leave-one-out errors."""
    rows = leave_one_out()
    loo = [abs(r["loo_error_pct"]) for r in rows if r["loo_error_pct"] is not None]
    return {
        "formula": "cycles = sum over layers of cycles_per_mac[kind]*MACs + cycles_per_output*outputs (MAC layers) "
        "+ cycles_per_element*elements (other layers) + cycles_per_layer; ms = cycles / MHz / 1000",
        "features": list(FEATURES),
        "coefficients": {k: {f: round(v, 4) for f, v in c.items()} for k, c in COEFFICIENTS.items()},
        "calibrated_families": list(CALIBRATED_FAMILIES),
        "fit": f"non-negative least squares on relative errors, ridge {RIDGE} towards priors",
        "calibration": rows,
        "max_abs_loo_error_pct": max(loo) if loo else None,
        "max_abs_fitted_error_pct": max(abs(r["fitted_error_pct"]) for r in rows),
    }


def render_fitted_block(calibration: list[dict]) -> str:
    """The Python text of the FITTED block for ``calibration`` (used by the benchmark's --refit)."""
    coeffs = fit_all(calibration)
    lines = [MARK_BEGIN + " (written by benchmarks/analysis_benchmark.py --refit; do not edit by hand)", "CALIBRATION = ["]
    for r in calibration:
        feats = ", ".join(f'"{k}": {float(r["features"][k])!r}' for k in FEATURES)
        lines.append(
            f'    {{"model": "{r["model"]}", "input_shape": {tuple(r["input_shape"])!r}, "classes": {r["classes"]}, '
            f'"board": "{r["board"]}", "core": "{r["core"]}", "mhz": {r["mhz"]}, "measured_ms": {r["measured_ms"]!r},'
        )
        lines.append(f"     \"features\": {{{feats}}}}},")
    lines.append("]")
    lines.append("COEFFICIENTS = {")
    for fam, c in coeffs.items():
        vals = ", ".join(f'"{k}": {round(v, 6)!r}' for k, v in c.items())
        lines.append(f'    "{fam}": {{{vals}}},')
    lines.append("}")
    lines.append(MARK_END)
    return "\n".join(lines)


def replace_fitted_block(source: str, block: str) -> str:
    """``source`` (boards.py's text) with its FITTED block replaced by ``block``."""
    start = source.index("\n" + MARK_BEGIN) + 1
    end = source.index("\n" + MARK_END, start) + 1 + len(MARK_END)
    return source[:start] + block + source[end:]


#: The cards' measured inference times (model, input, classes, board, ms). Features are filled by --refit.
CARD_ROWS = [
    ("st_mnist_v1", (28, 28, 1), 36, "STM32H747", 3.41),
    ("st_efficientnet_lc_v1", (128, 128, 3), 5, "STM32H747", 155.22),
    ("st_efficientnet_lc_v1", (224, 224, 3), 5, "STM32H747", 459.99),
    ("st_efficientnet_lc_v1", (128, 128, 3), 5, "STM32F769", 259.5),
    ("st_efficientnet_lc_v1", (224, 224, 3), 5, "STM32F769", 871.7),
    ("squeezenet_v1_0", (128, 128, 3), 5, "STM32H747", 648.0),
    ("st_mnist_v1", (28, 28, 1), 36, "STM32MP157", 0.69),
    ("st_efficientnet_lc_v1", (128, 128, 3), 5, "STM32MP157", 45.80),
    ("st_efficientnet_lc_v1", (224, 224, 3), 5, "STM32MP157", 137.34),
    ("squeezenet_v1_0", (128, 128, 3), 5, "STM32MP157", 134.83),
    ("st_mnist_v1", (28, 28, 1), 36, "STM32MP257", 0.31),
]

# BEGIN FITTED (written by benchmarks/analysis_benchmark.py --refit; do not edit by hand)
CALIBRATION = [
    {"model": "st_mnist_v1", "input_shape": (28, 28, 1), "classes": 36, "board": "STM32H747", "core": "cortex-m7", "mhz": 400, "measured_ms": 3.41,
     "features": {"conv": 931392.0, "pointwise": 100352.0, "depthwise": 42336.0, "fc": 2304.0, "mac_outputs": 17284.0, "elements": 3992.0, "layers": 10.0}},
    {"model": "st_efficientnet_lc_v1", "input_shape": (128, 128, 3), "classes": 5, "board": "STM32H747", "core": "cortex-m7", "mhz": 400, "measured_ms": 155.22,
     "features": {"conv": 1769472.0, "pointwise": 14792896.0, "depthwise": 3266304.0, "fc": 2880.0, "mac_outputs": 716041.0, "elements": 573306.0, "layers": 175.0}},
    {"model": "st_efficientnet_lc_v1", "input_shape": (224, 224, 3), "classes": 5, "board": "STM32H747", "core": "cortex-m7", "mhz": 400, "measured_ms": 459.99,
     "features": {"conv": 5419008.0, "pointwise": 45165568.0, "depthwise": 10003056.0, "fc": 2880.0, "mac_outputs": 2188105.0, "elements": 1742562.0, "layers": 175.0}},
    {"model": "st_efficientnet_lc_v1", "input_shape": (128, 128, 3), "classes": 5, "board": "STM32F769", "core": "cortex-m7", "mhz": 216, "measured_ms": 259.5,
     "features": {"conv": 1769472.0, "pointwise": 14792896.0, "depthwise": 3266304.0, "fc": 2880.0, "mac_outputs": 716041.0, "elements": 573306.0, "layers": 175.0}},
    {"model": "st_efficientnet_lc_v1", "input_shape": (224, 224, 3), "classes": 5, "board": "STM32F769", "core": "cortex-m7", "mhz": 216, "measured_ms": 871.7,
     "features": {"conv": 5419008.0, "pointwise": 45165568.0, "depthwise": 10003056.0, "fc": 2880.0, "mac_outputs": 2188105.0, "elements": 1742562.0, "layers": 175.0}},
    {"model": "squeezenet_v1_0", "input_shape": (128, 128, 3), "classes": 5, "board": "STM32H747", "core": "cortex-m7", "mhz": 400, "measured_ms": 648.0,
     "features": {"conv": 147324960.0, "pointwise": 26050560.0, "depthwise": 0.0, "fc": 0.0, "mac_outputs": 1122324.0, "elements": 1477330.0, "layers": 45.0}},
    {"model": "st_mnist_v1", "input_shape": (28, 28, 1), "classes": 36, "board": "STM32MP157", "core": "cortex-a7", "mhz": 800, "measured_ms": 0.69,
     "features": {"conv": 931392.0, "pointwise": 100352.0, "depthwise": 42336.0, "fc": 2304.0, "mac_outputs": 17284.0, "elements": 3992.0, "layers": 10.0}},
    {"model": "st_efficientnet_lc_v1", "input_shape": (128, 128, 3), "classes": 5, "board": "STM32MP157", "core": "cortex-a7", "mhz": 800, "measured_ms": 45.8,
     "features": {"conv": 1769472.0, "pointwise": 14792896.0, "depthwise": 3266304.0, "fc": 2880.0, "mac_outputs": 716041.0, "elements": 573306.0, "layers": 175.0}},
    {"model": "st_efficientnet_lc_v1", "input_shape": (224, 224, 3), "classes": 5, "board": "STM32MP157", "core": "cortex-a7", "mhz": 800, "measured_ms": 137.34,
     "features": {"conv": 5419008.0, "pointwise": 45165568.0, "depthwise": 10003056.0, "fc": 2880.0, "mac_outputs": 2188105.0, "elements": 1742562.0, "layers": 175.0}},
    {"model": "squeezenet_v1_0", "input_shape": (128, 128, 3), "classes": 5, "board": "STM32MP157", "core": "cortex-a7", "mhz": 800, "measured_ms": 134.83,
     "features": {"conv": 147324960.0, "pointwise": 26050560.0, "depthwise": 0.0, "fc": 0.0, "mac_outputs": 1122324.0, "elements": 1477330.0, "layers": 45.0}},
    {"model": "st_mnist_v1", "input_shape": (28, 28, 1), "classes": 36, "board": "STM32MP257", "core": "cortex-a35", "mhz": 1500, "measured_ms": 0.31,
     "features": {"conv": 931392.0, "pointwise": 100352.0, "depthwise": 42336.0, "fc": 2304.0, "mac_outputs": 17284.0, "elements": 3992.0, "layers": 10.0}},
]
COEFFICIENTS = {
    "cortex-m7": {"conv": 0.929336, "pointwise": 1.707608, "depthwise": 1.485208, "fc": 0.993643, "mac_outputs": 6.875241, "elements": 39.788453, "layers": 3432.044005},
    "cortex-a7": {"conv": 0.25362, "pointwise": 1.107171, "depthwise": 0.893664, "fc": 0.497096, "mac_outputs": 4.102905, "elements": 23.053125, "layers": 1823.564913},
    "cortex-a35": {"conv": 0.207818, "pointwise": 0.907222, "depthwise": 0.732274, "fc": 0.407323, "mac_outputs": 3.361943, "elements": 18.889861, "layers": 1494.239389},
    "cortex-m33": {"conv": 1.158203, "pointwise": 2.128138, "depthwise": 1.850968, "fc": 1.238346, "mac_outputs": 8.568397, "elements": 49.587102, "layers": 4277.248872},
    "cortex-m4": {"conv": 1.361396, "pointwise": 2.501495, "depthwise": 2.1757, "fc": 1.4556, "mac_outputs": 10.071625, "elements": 58.286593, "layers": 5027.643411},
}
# END FITTED
