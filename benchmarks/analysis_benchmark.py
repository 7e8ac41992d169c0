"""Benchmark of ``mcuzoo analyze`` against the model cards.

Builds the three seed models at the cards' resolutions (random weights: the
footprint does not depend on them), quantizes them to int8 .tflite with random
calibration images, analyzes them and prints markdown tables:

1. activation RAM (TFLM greedy / ours / lower bound) and weights flash vs the cards;
2. the latency model: estimate vs every measured card row, with the
   leave-one-out error, and the host latency;
3. the planners on random workloads (where TFLM's greedy is not already optimal).

    python benchmarks/analysis_benchmark.py            # tables
    python benchmarks/analysis_benchmark.py --refit    # refit the latency model, rewrite boards.py's FITTED block
    python benchmarks/analysis_benchmark.py --out DIR  # keep the .tflite files (and PNG timelines) in DIR
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from mcuzoo.analysis import analyze, boards, planner  # noqa: E402
from mcuzoo.analysis.graph import load_graph  # noqa: E402

KiB = 1024

# (model, input shape, classes, card activation RAM KiB, card weights flash KiB)
SEEDS = [
    ("st_mnist_v1", (28, 28, 1), 36, 17.21, 10.08),
    ("st_efficientnet_lc_v1", (128, 128, 3), 5, 181.01, 505.29),
    ("st_efficientnet_lc_v1", (224, 224, 3), 5, 466.01, 505.29),
    ("squeezenet_v1_0", (128, 128, 3), 5, 450.0, 535.69),
]


def tflite_path(out: Path, name: str, shape, classes: int) -> Path:
    return out / f"{name}_{shape[0]}x{shape[1]}x{shape[2]}_{classes}c_int8.tflite"


def build_seeds(out: Path) -> dict:
    """Build and quantize each seed (once; reused when the file exists)."""
    from mcuzoo.models import build_model, get_model_spec
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.tflite import quantize_tflite

    paths = {}
    rng = np.random.default_rng(0)
    for name, shape, classes, *_ in SEEDS:
        path = tflite_path(out, name, shape, classes)
        if not path.exists():
            t = time.perf_counter()
            spec = get_model_spec(name)
            model = build_model(name, shape, classes)
            images = rng.integers(0, 256, size=(8, *shape), dtype=np.uint8)
            quantize_tflite(model, Calibration(images, spec.default_rescale, spec.default_offset), path,
                            per_channel=True)
            print(f"built {path.name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        paths[(name, tuple(shape), classes)] = path
    return paths


def refit(paths: dict) -> None:
    """Recompute the calibration rows' features, refit, rewrite the FITTED block of boards.py."""
    rows = []
    for model, shape, classes, board_name, ms in boards.CARD_ROWS:
        board = boards.find_board(board_name)
        graph = load_graph(paths[(model, tuple(shape), classes)])
        rows.append({"model": model, "input_shape": tuple(shape), "classes": classes, "board": board.name,
                     "core": board.core, "mhz": board.mhz, "measured_ms": ms, "features": boards.latency_features(graph)})
    block = boards.render_fitted_block(rows)
    src_path = Path(boards.__file__)
    text = src_path.read_text()
    new = boards.replace_fitted_block(text, block)
    if new == text:
        print("boards.py: FITTED block unchanged", file=sys.stderr)
        return
    from mcuzoo import rundir

    rundir.write_text(src_path, new)
    print(f"rewrote the FITTED block of {src_path}", file=sys.stderr)
    import importlib

    importlib.reload(boards)


def random_workloads(n_cases: int = 200, seed: int = 0):
    """Random buffer sets shaped like DNN graphs: mostly short lifetimes, a few long skips, sizes over 2 decades."""
    rng = random.Random(seed)
    for _ in range(n_cases):
        n_ops = rng.randint(20, 80)
        bufs = []
        for t in range(n_ops):
            for _ in range(rng.choice((1, 1, 1, 2))):
                life = rng.choice((1, 1, 1, 2, 2, 3)) if rng.random() > 0.12 else rng.randint(3, 20)
                size = int(16 * round(10 ** rng.uniform(2, 4.3) / 16))
                bufs.append(planner.Buffer(f"b{len(bufs)}", size, t, min(n_ops - 1, t + life)))
        yield bufs


def planner_table() -> str:
    ratios_tflm, ratios_ours, wins, t_ours = [], [], 0, 0.0
    for bufs in random_workloads():
        lb = planner.lower_bound(bufs)
        g = planner.tflm_greedy(bufs).arena
        t = time.perf_counter()
        o = planner.plan_offsets(bufs).arena
        t_ours += time.perf_counter() - t
        ratios_tflm.append(g / lb)
        ratios_ours.append(o / lb)
        wins += o < g
    n = len(ratios_ours)
    lines = [
        "| planner (200 random workloads) | mean arena / lower bound | worst | cases at the lower bound |",
        "| --- | ---: | ---: | ---: |",
        f"| TFLM greedy | {np.mean(ratios_tflm):.4f} | {max(ratios_tflm):.4f} | {sum(r == 1 for r in ratios_tflm)}/{n} |",
        f"| ours | {np.mean(ratios_ours):.4f} | {max(ratios_ours):.4f} | {sum(r == 1 for r in ratios_ours)}/{n} |",
        "",
        f"ours smaller than TFLM greedy in {wins}/{n} cases, never larger; {1e3 * t_ours / n:.1f} ms per case.",
    ]
    return "\n".join(lines)


def branching_example() -> str:
    """The fire-module-like graph of the tests: order search vs the model's order."""
    g = planner.example_branching_graph()
    base = planner.tflm_greedy(planner.lifetimes(g)).arena
    (peak, order), *_ = planner.search_orders(g)
    ours = planner.plan_offsets(planner.lifetimes(g, order)).arena
    return f"two-branch example: TFLM greedy in model order {base / KiB:.0f} KiB, ours with order {order} {ours / KiB:.0f} KiB (lower bound {peak / KiB:.0f} KiB)."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refit", action="store_true", help="refit the latency model and rewrite boards.py's FITTED block")
    ap.add_argument("--out", default=None, help="folder for the .tflite files and PNG timelines (default: a temporary folder)")
    ap.add_argument("--runs", type=int, default=20, help="host latency runs per model (median)")
    args = ap.parse_args(argv)

    tmp = None
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mcuzoo-analysis-bench-")
        out = Path(tmp.name)
    paths = build_seeds(out)
    if args.refit:
        refit(paths)

    import platform

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    print()
    print("| model | input | act. RAM TFLM greedy | act. RAM ours | lower bound | card | ours vs card | ours vs LB | weights flash | card | flash vs card | + quant. params | analysis time | host latency |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    results = {}
    for name, shape, classes, card_ram, card_flash in SEEDS:
        path = paths[(name, tuple(shape), classes)]
        plot = out / (path.stem + ".png") if args.out else None
        t = time.perf_counter()
        a = analyze(path, measure_host=False)
        t_an = time.perf_counter() - t
        a_host = analyze(path, measure_host=True, host_runs=args.runs, plot=plot)
        results[(name, tuple(shape))] = a_host
        ours = a.activation_bytes / KiB
        print(
            f"| {name} | {shape[0]}x{shape[1]}x{shape[2]}, {classes} cl. | {a.activation_baseline_bytes / KiB:.2f} KiB "
            f"| {ours:.2f} KiB | {a.activation_lower_bound_bytes / KiB:.2f} KiB | {card_ram:.2f} KiB "
            f"| {100 * (ours - card_ram) / card_ram:+.1f} % | {100 * (a.activation_bytes - a.activation_lower_bound_bytes) / a.activation_lower_bound_bytes:+.1f} % "
            f"| {a.weights_bytes / KiB:.2f} KiB | {card_flash:.2f} KiB | {100 * (a.weights_bytes / KiB - card_flash) / card_flash:+.2f} % "
            f"| {a.flash_bytes / KiB:.2f} KiB | {t_an:.2f} s | {a_host.host_latency_ms:.2f} ms |"
        )
    print()
    print("| model | input | board | card | estimate | error | leave-one-out estimate | LOO error |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in boards.leave_one_out():
        loo = "n/a (only row of its core)" if row["loo_ms"] is None else f"{row['loo_ms']:.2f} ms"
        loo_e = "" if row["loo_error_pct"] is None else f"{row['loo_error_pct']:+.1f} %"
        print(f"| {row['model']} | {row['input']} | {row['board']} | {row['measured_ms']:.2f} ms | {row['fitted_ms']:.2f} ms "
              f"| {row['fitted_error_pct']:+.1f} % | {loo} | {loo_e} |")
    print()
    print("coefficients (cycles): " + "; ".join(
        f"{fam}: " + ", ".join(f"{k} {v:.3g}" for k, v in c.items()) for fam, c in boards.COEFFICIENTS.items()
        if fam in ("cortex-m7", "cortex-a7")))
    print()
    print(planner_table())
    print()
    print(branching_example())
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
