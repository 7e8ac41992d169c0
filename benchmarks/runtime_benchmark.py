"""Speed of the MCU-exact .tflite path against XNNPACK and against TFLM's own interpreter.

For each zoo folder given (``zoo/<model>/<dataset>_<res>``: ``model_int8.tflite`` and the run's
``config.yaml``), this script loads the run's evaluation split (test, as ``mcuzoo evaluate MODEL
CONFIG.yaml`` does) and measures images per second of

* ``exact``: :mod:`mcuzoo.runtime`'s default path (LiteRT's reference kernels, batched, where every
  operator of the model matches TFLM's; else TFLM's own interpreter), in one process and, with
  ``--workers N``, in N processes;
* ``xnnpack``: LiteRT's default XNNPACK delegate (``--runtime xnnpack``), batched;
* ``tflm``: the ``tflite-micro`` package's interpreter (one image per invoke, as on the board), on the
  first ``--tflm-images`` images.

It also checks that the exact path's outputs equal TFLM's on those images (bit for bit) and counts the
images of the split whose top-1 class differs between XNNPACK and the exact path. Run from the
repository root (the configs name ``../shared/data``)::

    python benchmarks/runtime_benchmark.py zoo/*/* --workers 2 --json benchmarks/results/runtime.json

It prints a Markdown table ready for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _split(folder: Path):
    from mcuzoo.config import load_config
    from mcuzoo.data import load_dataset

    cfg = load_config(folder / "config.yaml")
    shape = tuple(cfg.model.input_shape)
    ds = load_dataset(cfg.dataset, shape, cfg.preprocessing.interpolation, aspect=cfg.preprocessing.aspect)
    split = ds.eval_split
    x = np.concatenate([b for b, _ in split.numpy_batches(256)])
    return ds.eval_split_name, x


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _litert(path: Path, x: np.ndarray, runtime: str, workers: int, batch: int) -> tuple[np.ndarray, float]:
    from mcuzoo.runtime import open_tflite

    runner = open_tflite(path.read_bytes(), path, runtime, workers)
    try:
        runner.run(x[: min(len(x), batch)])  # interpreter set up (and the worker processes started) before timing
        t = time.perf_counter()
        y = np.concatenate([runner.run(x[i:i + batch]) for i in range(0, len(x), batch)])
        return y, time.perf_counter() - t
    finally:
        runner.close()


def _tflm(path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    from tflite_micro.python.tflite_micro import runtime as tflm

    it = tflm.Interpreter.from_file(str(path), arena_size=4 << 20)
    t = time.perf_counter()
    out = []
    for img in x:
        it.set_input(img[None], 0)
        it.invoke()
        out.append(it.get_output(0).copy())
    return np.concatenate(out), time.perf_counter() - t


def bench(folder: Path, args) -> dict:
    path = folder / "model_int8.tflite"
    split_name, x = _split(folder)
    n = len(x)
    row: dict = {"model": folder.as_posix(), "split": split_name, "images": n, "input": list(x.shape[1:])}
    exact, s = _litert(path, x, "exact", 1, args.batch)
    row["exact_img_s"] = n / s
    for w in sorted(set(args.workers) - {1}):
        y, s = _litert(path, x, "exact", w, args.batch)
        assert np.array_equal(y, exact), "the worker processes changed the outputs"
        row[f"exact_{w}proc_img_s"] = n / s
    fast, s = _litert(path, x, "xnnpack", 1, args.batch)
    row["xnnpack_img_s"] = n / s
    row["top1_differs_xnnpack_vs_exact"] = int((fast.argmax(1) != exact.argmax(1)).sum())
    row["max_output_diff_xnnpack_vs_exact"] = float(np.abs(fast.astype(np.float64) - exact).max())
    k = min(n, args.tflm_images)
    ref, s = _tflm(path, x[:k])
    row["tflm_img_s"] = k / s
    row["tflm_images"] = k
    row["exact_equals_tflm"] = bool(np.array_equal(ref, exact[:k]))
    return row


def _machine() -> str:
    import os
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else "?"
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="zoo folders (model_int8.tflite + config.yaml)")
    p.add_argument("--workers", type=int, nargs="*", default=[2], help="process counts to try for the exact path")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tflm-images", type=int, default=200, help="images run through TFLM's interpreter")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from importlib.metadata import version

    rows = []
    for f in args.folders:
        print(f"{f} ...", file=sys.stderr, flush=True)
        rows.append(bench(f, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    meta = {"machine": _machine(), "ai-edge-litert": version("ai-edge-litert"), "tflite-micro": version("tflite-micro"),
            "batch": args.batch}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    ws = sorted(set(args.workers) - {1})
    head = ["model", "split (images)", "exact, 1 process"] + [f"exact, {w} processes" for w in ws] + [
        "XNNPACK", "TFLM interpreter", "exact = TFLM", "top-1 differs, XNNPACK vs exact"]
    print(f"Machine: {meta['machine']}; ai-edge-litert {meta['ai-edge-litert']}, tflite-micro {meta['tflite-micro']}, "
          f"batch {args.batch}. Images per second.\n")
    print("| " + " | ".join(head) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in head[2:]) + " |")
    for r in rows:
        cells = [r["model"], f"{r['split']} ({r['images']:,})", f"{r['exact_img_s']:.1f}"]
        cells += [f"{r[f'exact_{w}proc_img_s']:.1f}" for w in ws]
        cells += [f"{r['xnnpack_img_s']:.1f}", f"{r['tflm_img_s']:.1f} ({r['tflm_images']} images)",
                  "yes" if r["exact_equals_tflm"] else "**no**",
                  f"{r['top1_differs_xnnpack_vs_exact']} ({100 * r['top1_differs_xnnpack_vs_exact'] / r['images']:.1f} %)"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
