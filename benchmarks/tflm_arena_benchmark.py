"""tflm_arena_bytes against TensorFlow Lite Micro's measured minimum arena, on every zoo model.

For each ``zoo/*/*/*.tflite`` (or the files given): the modelled arena
(:func:`mcuzoo.analysis.tflm.tflm_arena_bytes`, no trial run) and its parts, the
smallest ``arena_size`` with which the ``tflite-micro`` interpreter allocates and
invokes the model (bisection, one forked child per trial), and the cards'
convention (activations with input and output) beside them. Prints a markdown table.

    python benchmarks/tflm_arena_benchmark.py [MODEL.tflite ...]
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mcuzoo.analysis import analyze_graph, load_graph  # noqa: E402
from mcuzoo.analysis import tflm  # noqa: E402


def kib(n: int) -> str:
    return f"{n / 1024:,.2f} KiB"


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted(REPO.glob("zoo/*/*/*.tflite"))
    print("| zoo model | tflm_arena_bytes | measured minimum | difference | planned + persistent | "
          "cards' convention (activations) | model time | bisection time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in paths:
        t0 = time.perf_counter()
        a = tflm.tflm_arena(p)
        t_model = time.perf_counter() - t0
        t0 = time.perf_counter()
        minimum = tflm.smallest_arena(p, int(a.arena_bytes / 1.05), a.arena_bytes)
        t_bisect = time.perf_counter() - t0
        cards = analyze_graph(load_graph(p), search_order=True).activation_bytes
        name = str(p.parent.relative_to(REPO / "zoo")) if p.is_relative_to(REPO / "zoo") else p.name
        print(f"| {name} | {a.arena_bytes:,} B | {minimum:,} B | {100 * (a.arena_bytes - minimum) / minimum:+.2f} % "
              f"| {kib(a.planned_bytes)} + {kib(a.persistent_bytes)} | {cards:,} B | {t_model * 1e3:.0f} ms "
              f"| {t_bisect:.1f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
