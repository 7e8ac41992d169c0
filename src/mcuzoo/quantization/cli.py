"""``mcuzoo quantize RUN_DIR [--onnx] [--mixed] [--report]``: the quantization extras on a finished run.

Entry point: :func:`register_cli` (adds the verb to the CLI's subparsers).
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import rundir
from ..console import console
from ..errors import McuzooError


def cmd_quantize(args) -> int:
    from ..config import load_config

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise McuzooError(f"run directory not found: {run_dir}")
    for need in (rundir.CONFIG, rundir.FLOAT_MODEL):
        if not (run_dir / need).is_file():
            raise McuzooError(f"{run_dir} is not a finished run: {need} is missing")
    if args.tolerance is not None and not 0 <= args.tolerance < 1:
        raise McuzooError(f"--tolerance must be in [0, 1) (0.015 = 1.5 points), got {args.tolerance:g}")
    if args.confidence is not None and not 0.5 <= args.confidence < 1:
        raise McuzooError(f"--confidence must be in [0.5, 1) (0.9 = 90 %), got {args.confidence:g}")
    do = {"onnx": args.onnx, "mixed": args.mixed, "report": args.report}
    if not any(do.values()):
        do = {"onnx": True, "mixed": False, "report": True}
    cfg = load_config(run_dir / rundir.CONFIG)
    options = {
        "per_channel": False if args.per_tensor else None,
        "calibration_method": args.calibration_method, "calibration_samples": args.calibration_samples,
        "onnx_opset": args.opset, "mixed_tolerance": args.tolerance, "mixed_max_evals": args.max_evals,
        "mixed_confidence": args.confidence,
        "report_images": args.report_images,
    }
    from ..data import load_run_dataset
    from .stage import merge_extras, run_quant_extras

    with rundir.RunLock(run_dir):
        dataset = load_run_dataset(cfg)
        split_name, split = dataset.eval_split_name, dataset.eval_split
        res = run_quant_extras(cfg, dataset, run_dir, eval_split=split, options=options, **do)
        metrics_path = run_dir / rundir.METRICS
        if metrics_path.is_file():  # the run's figures gain the new models' (the card reads them there)
            rundir.write_json(metrics_path, merge_extras(rundir.read_json(metrics_path), res))
    res["evaluation_split"] = split_name
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    from ..console import print_out  # results on stdout; notes stay on stderr

    if "onnx" in res:
        o = res["onnx"]
        print_out(f"{o['file']}: top-1 on {split_name} [bold]{100 * o['top1']:.2f} %[/], "
                  f"weights flash {o['weights_flash_bytes']:,} B")
    if "mixed" in res:
        m = res["mixed"]
        print_out(f"{m['file']}: top-1 on {split_name} [bold]{100 * m['top1']:.2f} %[/], "
                  f"weights flash {m['weights_bytes']:,} B (-{m['saving_pct']:.1f} % vs all-int8)")
    if "report" in res:
        from .report import REPORT_JSON, REPORT_PNG, LayerError, LayerErrors, report_table

        errors_json = rundir.read_json(run_dir / REPORT_JSON)
        rows = [LayerError(**r) for r in errors_json["rows"]]
        errs = LayerErrors(rows, errors_json["layers"], errors_json["unmatched"], errors_json["images"])
        print_out(report_table(errs, limit=args.top))
        console.print(f"report: {run_dir / REPORT_JSON}, {run_dir / REPORT_PNG}")
    return 0


def register_cli(subparsers) -> None:
    """Add ``mcuzoo quantize RUN_DIR [--report] [--onnx] [--mixed]`` to the CLI's subparsers."""
    from .onnx_qdq import CALIBRATION_METHODS, MAX_OPSET, MIN_OPSET

    q = subparsers.add_parser(
        "quantize", help="ONNX QDQ int8, mixed int4/int8 and a per-layer error report for a finished run",
        description="Work on an existing run directory (float_model.keras, model_int8.tflite, config.yaml): "
                    "write model_float.onnx + model_qdq_int8.onnx (--onnx), a mixed int4/int8 "
                    "model_qdq_w4_.._w8_.._a8_100.onnx (--mixed) and quant_report.json/.png (--report). "
                    "Without flags: --onnx --report. Nothing else in the run directory changes.")
    q.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `mcuzoo run`")
    q.add_argument("--onnx", action="store_true", help="export the ONNX QDQ int8 model")
    q.add_argument("--mixed", action="store_true", help="search a mixed int4/int8-weights model (ONNX opset 21)")
    q.add_argument("--report", action="store_true", help="per-layer SQNR of the int8 .tflite vs the float model")
    q.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default: per-channel)")
    q.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=None,
                   help="activation calibration (default: the config's, else minmax)")
    q.add_argument("--calibration-samples", type=int, default=None, metavar="N",
                   help="calibration images (default: the config's)")
    q.add_argument("--opset", type=int, default=None, choices=range(MIN_OPSET, MAX_OPSET + 1), metavar="N",
                   help=f"ONNX opset of the QDQ int8 model ({MIN_OPSET}-{MAX_OPSET}; default: the run's "
                        f"quantization.onnx_opset, {MIN_OPSET} unless set)")
    q.add_argument("--tolerance", type=float, default=None, metavar="T",
                   help="mixed: allowed top-1 drop vs all-int8 on validation, as a fraction (default 0.015)")
    q.add_argument("--confidence", type=float, default=None, metavar="C",
                   help="mixed: confidence that the loss vs all-int8 is within the tolerance, from the paired "
                        "difference on validation (default 0.9; 0.5 = plain comparison)")
    q.add_argument("--max-evals", type=int, default=None, metavar="N", help="mixed: evaluation budget (default 12)")
    q.add_argument("--report-images", type=int, default=None, metavar="N", help="report: images (default 32)")
    q.add_argument("--top", type=int, default=20, metavar="N", help="report: rows shown in the table (default 20)")
    q.add_argument("--json", action="store_true", help="print the results as JSON")
    q.set_defaults(fn=cmd_quantize)
