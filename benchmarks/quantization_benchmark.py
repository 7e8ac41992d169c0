"""Quantization that keeps accuracy: float vs int8 .tflite vs QDQ int8 .onnx vs mixed int4/int8 .onnx.

For each run directory written by ``mcuzoo run`` (it holds ``float_model.keras``,
``model_int8.tflite``, ``model_info.json`` and ``config.yaml``), this script

* reloads the run's dataset from its config (the same splits, same seed),
* exports the QDQ int8 ONNX model and searches the mixed int4/int8 one (the
  search scores the **validation** split only), from ``float_model_qat.keras``
  where the run made one (``quantization.qat_epochs``), as the run itself does,
* scores float (.keras), int8 (.tflite), QDQ int8 (.onnx) and mixed (.onnx) on
  the held-out split (test when the run has one, else validation, said so),
* compares each quantized model with its reference on the same images (int8,
  QDQ: the float model; mixed: the QDQ int8 model): the paired top-1 difference,
  its standard error and the images on which only one of the two is right
  (``mcuzoo.evaluate.paired_difference``), so that a reader sees whether a
  difference of a few images is a loss or noise,
* reports each model's weights flash (its constants at their stored width: int8 / int4
  packed / int32 biases / shape constants, quantization parameters apart; the one definition
  of ``mcuzoo.models.flash``, which ``mcuzoo analyze`` and the cards use too).

The run directory is only read: the ONNX files go to ``--work DIR/<run name>``
(default: a temporary folder, deleted at the end). Training the seed models on real data takes long
on a small machine, so train them first, e.g.::

    mcuzoo run configs/quickstart.yaml name=stmnist_emnist dataset.name=emnist_byclass \\
        dataset.path=../shared/data/emnist-byclass-sample dataset.test_split=0.15
    mcuzoo run configs/quickstart.yaml name=effnet_flowers model.name=st_efficientnet_lc_v1 \\
        model.input_shape=[128,128,3] dataset.name=folder dataset.path=../shared/data/flowers \\
        dataset.test_split=0.15 preprocessing.rescale=0.00392156862745098 preprocessing.offset=0
    (and the same with model.name=squeezenet_v1_0)

then::

    python benchmarks/quantization_benchmark.py runs/stmnist_emnist runs/effnet_flowers runs/squeezenet_flowers \\
        --work /tmp/qbench --json /tmp/qbench/quantization.json

It prints a Markdown table (one row per run and model) ready for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _machine() -> str:
    from mcuzoo.analysis import host_machine

    h = host_machine()
    return f"{h['cpu']}, {h['cores']} available, {h['system']}"


def _runtimes() -> str:
    """Runtime versions and the CPU's int8 instruction sets: the same QDQ file scored 90.31 % in one session and
    90.05 % in another (ONNX Runtime's int8 kernels differ by version and by instruction set)."""
    from importlib.metadata import PackageNotFoundError, version

    from mcuzoo.evaluate import runtime

    parts = [runtime("onnxruntime"), runtime("litert")]
    for pkg in ("tensorflow-cpu", "tensorflow"):  # the .tflite converter
        try:
            parts.append(f"{pkg} {version(pkg)}")
            break
        except PackageNotFoundError:
            pass
    try:
        flags = set(next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split())
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
        parts.append("CPU " + (" ".join(isa) if isa else "without AVX2"))
    except (OSError, StopIteration):
        pass
    return ", ".join(parts)


def tflite_weights_flash(path: str | Path) -> int:
    """Weights flash of a .tflite, as the QDQ models' figures (:mod:`mcuzoo.models.flash`'s definition)."""
    from mcuzoo.analysis.graph import load_graph

    return load_graph(Path(path)).weights_bytes


def bench_run(run_dir: Path, work: Path, args) -> dict:
    from mcuzoo import rundir
    from mcuzoo.config import load_config
    from mcuzoo.evaluate import evaluate_model, paired_difference, read_model_info
    from mcuzoo.quantization.mixed import search_mixed
    from mcuzoo.quantization.calibration import draw_calibration
    from mcuzoo.quantization.onnx_qdq import export_qdq, weights_flash
    from mcuzoo.data import load_run_dataset
    from mcuzoo.quantization.tflite import quantize_tflite

    from mcuzoo.quantization.qat import int8_source

    cfg = load_config(run_dir / rundir.CONFIG)
    float_path = run_dir / rundir.FLOAT_MODEL
    source = int8_source(run_dir)  # the quantization-aware fine-tuned copy where the run made one, as in the run
    tflite_path = run_dir / rundir.INT8_TFLITE
    info = read_model_info(float_path)
    rescale = info.rescale if info else cfg.preprocessing.rescale
    offset = info.offset if info else cfg.preprocessing.offset
    t0 = time.time()
    ds = load_run_dataset(cfg)
    split_name, split = ("test", ds.test) if ds.test is not None and len(ds.test) else ("validation", ds.val)
    names = list(ds.class_names)
    bs = cfg.evaluation.batch_size
    calib = draw_calibration(cfg, ds, args.calibration_samples or None, rescale, offset)
    print(f"[{run_dir.name}] {cfg.model.name} on {ds.name}: {ds.summary()}; held-out: {split_name} "
          f"({len(split)} images); calibration {len(calib)} images", file=sys.stderr, flush=True)

    correct = {}  # file name -> per-image correctness on the held-out split

    def top1(path, on=split):
        res = evaluate_model(path, on, names, rescale, offset, bs)
        if on is split:
            correct[Path(path).name] = res.correct
        return res.top1

    rows = []
    acc_f = top1(float_path)
    rows.append({"model": "float (.keras)", "file": float_path.name, "top1": acc_f, "weights_bytes": None,
                 "seconds": None})
    if tflite_path.is_file():
        rows.append({"model": "int8 (.tflite)", "file": tflite_path.name, "top1": top1(tflite_path),
                     "weights_bytes": tflite_weights_flash(tflite_path), "seconds": None})
    work.mkdir(parents=True, exist_ok=True)
    for n in args.tflite_calibration:
        # the .tflite again with another number of calibration images (same seed, same first images)
        out = work / f"model_int8_calib{n}.tflite"
        t = time.time()
        quantize_tflite(source, draw_calibration(cfg, ds, n, rescale, offset), out, per_channel=not args.per_tensor)
        rows.append({"model": f"int8 (.tflite, {n} calibration images)", "file": out.name, "top1": top1(out),
                     "weights_bytes": tflite_weights_flash(out), "seconds": round(time.time() - t, 1)})
    t = time.time()
    qdq = export_qdq(source, calib, work, per_channel=not args.per_tensor,
                     calibration_method=args.calibration_method)
    rows[0]["weights_bytes"] = weights_flash(work / "model_float.onnx").total_bytes  # float32 after BN folding
    rows.append({"model": f"QDQ int8 (.onnx, {args.calibration_method})", "file": qdq.name, "top1": top1(qdq),
                 "weights_bytes": weights_flash(qdq).total_bytes, "seconds": round(time.time() - t, 1)})
    mixed = None
    if not args.no_mixed:
        t = time.time()
        res = search_mixed(
            work / "model_float.onnx", calib, lambda p: evaluate_model(p, ds.val, names, rescale, offset, bs).correct,
            tolerance=args.tolerance, out_dir=work, per_channel=not args.per_tensor,
            calibration_method=args.calibration_method, max_evals=args.max_evals, rank=args.rank,
            confidence=args.confidence,
        )
        mixed = res.summary()
        rows.append({"model": "mixed w4/w8 (.onnx)", "file": res.path.name, "top1": top1(res.path),
                     "weights_bytes": res.weights_bytes, "seconds": round(time.time() - t, 1)})
    # each quantized model against its reference, image by image
    qdq_file = next((x["file"] for x in rows if x["model"].startswith("QDQ")), None)
    for x in rows[1:]:
        x["reference"] = qdq_file if x["model"].startswith("mixed") else float_path.name
        x["vs_reference"] = paired_difference(correct[x["reference"]], correct[x["file"]]).to_json()
    return {
        "run": str(run_dir), "model": cfg.model.name, "dataset": ds.name, "input_shape": list(cfg.model.input_shape),
        "split": split_name, "n": len(split), "calibration_images": int(len(calib)), "int8_source": source.name,
        "train_epochs": _epochs(run_dir), "rows": rows, "mixed": mixed, "seconds": round(time.time() - t0, 1),
    }


def _epochs(run_dir: Path):
    try:
        m = json.loads((run_dir / "metrics.json").read_text())
        return m.get("training", {}).get("epochs_run")
    except (OSError, ValueError):
        return None


#: The issue's goal: int8 and QDQ lose at most 0.5 points against float; mixed at most 1.5 against int8.
GOAL_POINTS = {"int8": 0.5, "QDQ": 0.5, "mixed": 1.5}


def _vs(x: dict) -> str:
    """``-1.34 +- 0.79 (12 / 5)``: points vs the reference, its standard error, images only it / only this got right."""
    v = x.get("vs_reference")
    if not v:
        return "-"
    return f"{100 * v['diff']:+.2f} ± {100 * v['se']:.2f} ({v['a_only']} / {v['b_only']})"


def _goal(x: dict) -> str:
    v = x.get("vs_reference")
    kind = next((k for k in GOAL_POINTS if x["model"].startswith(k)), None)
    if not v or kind is None:
        return ""
    return "met" if -100 * v["diff"] <= GOAL_POINTS[kind] + 1e-9 else "**not met**"


def markdown(results: list[dict]) -> str:
    lines = ["| run (model, data, input) | held-out split | model | top-1 % | vs reference, points "
             "± s.e. (only ref. right / only this right) | goal | weights flash |",
             "| --- | --- | --- | ---: | --- | --- | ---: |"]
    for r in results:
        ref = next((x["weights_bytes"] for x in r["rows"] if x["model"].startswith("QDQ")), None)
        for x in r["rows"]:
            kib = f"{x['weights_bytes'] / 1024:.2f} KiB" if x["weights_bytes"] else "-"
            if x["model"].startswith("mixed") and ref:
                kib += f" ({100 * (x['weights_bytes'] - ref) / ref:+.1f} % vs QDQ int8)"
            head = f"{r['model']}, {r['dataset']}, {'x'.join(map(str, r['input_shape']))}"
            what = x["model"]
            if x is not r["rows"][0] and r.get("int8_source", "").endswith("_qat.keras"):
                what += f", from `{r['int8_source']}`"
            lines.append(f"| {head} | {r['split']} ({r['n']}) | {what} `{x['file']}` | "
                         f"{100 * x['top1']:.2f} | {_vs(x)} | {_goal(x)} | {kib} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories written by `mcuzoo run`")
    p.add_argument("--work", type=Path, default=None,
                   help="keep the ONNX files here (<work>/<run name>/); default: a temporary folder, deleted")
    p.add_argument("--calibration-method", default="minmax", choices=("minmax", "percentile", "entropy"))
    p.add_argument("--calibration-samples", type=int, default=None, help="default: the run's config")
    p.add_argument("--per-tensor", action="store_true")
    p.add_argument("--tolerance", type=float, default=0.015, help="mixed: top-1 drop allowed vs all-int8 (0.015)")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="mixed: confidence that the loss vs all-int8 is within the tolerance on validation (0.9)")
    p.add_argument("--max-evals", type=int, default=12, help="mixed: evaluation budget")
    p.add_argument("--rank", default="sensitivity", choices=("sensitivity", "noise", "size"))
    p.add_argument("--no-mixed", action="store_true")
    p.add_argument("--tflite-calibration", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                   metavar="N,N,...", help="also score .tflite models calibrated on these numbers of training images")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)

    from mcuzoo.console import quiet_tensorflow
    from mcuzoo.errors import McuzooError

    quiet_tensorflow()
    results = []
    with tempfile.TemporaryDirectory(prefix="mcuzoo_qbench_") as tmp:
        work = args.work if args.work is not None else Path(tmp)
        for i, run in enumerate(args.runs, 1):
            try:  # zoo folders share names across models (flowers_128): number them so none overwrites another
                results.append(bench_run(run, work / f"{i}_{run.parent.name}_{run.name}", args))
            except McuzooError as e:
                print(f"[{run}] error: {e}", file=sys.stderr)
    if not results:
        return 1
    out = {"machine": _machine(), "runtimes": _runtimes(), "command": " ".join(["python", *sys.argv]), "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(results))
    for r in results:
        if r["mixed"]:
            m = r["mixed"]
            se = f" (paired drop {100 * m['drop']:.2f} ± {100 * m['drop_se']:.2f}, {100 * m['confidence']:g} % " \
                 f"confidence)" if m.get("drop_se") is not None else ""
            print(f"\n{r['model']}: mixed search: {m['evaluations']} evaluations, validation top-1 "
                  f"{100 * m['accuracy']:.2f} % vs all-int8 {100 * m['accuracy_int8']:.2f} %{se} "
                  f"(all-int4 {100 * m['accuracy_int4']:.2f} %), {len(m['int4_tensors'])} int4 / "
                  f"{len(m['int8_tensors'])} int8 weight tensors, weights {m['weights_bytes']:,} B vs "
                  f"{m['weights_bytes_int8']:,} B (-{m['saving_pct']:.1f} %)")
    print(f"\nmachine: {out['machine']}; {out['runtimes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
