"""The quantization stage: the int8 models of a run directory, as ``cfg.quantization`` says.

Entry point: :func:`run_stage` (what ``mcuzoo run`` calls): the calibration set,
drawn once (:mod:`.calibration`), then the optional quantization-aware
fine-tuning (:mod:`.qat`), the int8 .tflite (:mod:`.tflite`),
then the extras of :func:`run_quant_extras`: ONNX QDQ (:mod:`.onnx_qdq`), the
mixed int4/int8 search (:mod:`.mixed`) and the per-layer report (:mod:`.report`).
It reads ``float_model.keras`` from the run directory and writes the int8
models there; it returns the run's metrics.json entries.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import rundir
from ..console import console
from ..errors import McuzooError

if TYPE_CHECKING:
    from ..config import Config
    from ..data import Dataset, Split
    from .calibration import Calibration


def run_stage(cfg: Config, dataset: Dataset, run_dir: str | Path) -> dict:
    """Quantize the run in ``run_dir``; return its metrics.json entries (qat, onnx_qdq, mixed, quant_report, quantization)."""
    from .calibration import draw_calibration
    from .qat import QAT_MODEL, finetune_qat
    from .tflite import quantize_tflite

    run_dir = Path(run_dir)
    float_path = run_dir / rundir.FLOAT_MODEL
    int8_path = run_dir / rundir.INT8_TFLITE
    if not float_path.is_file():
        raise McuzooError(f"quantize stage needs {float_path}: include the train stage")
    metrics: dict = {}
    t0 = time.time()
    qc = cfg.quantization
    calibration = draw_calibration(cfg, dataset)  # the one draw: every method calibrates on these images
    source = float_path
    (run_dir / QAT_MODEL).unlink(missing_ok=True)  # a stale one would feed the ONNX exports
    if qc.qat_epochs > 0:
        console.print(f"quantization-aware fine-tuning ({qc.qat_epochs} epochs, kept only where "
                      "validation says its int8 model is nearer the float model) ...")
        qat = finetune_qat(
            float_path, dataset, run_dir, calibration, epochs=qc.qat_epochs, learning_rate=qc.qat_learning_rate,
            batch_size=cfg.training.batch_size, augmentation=cfg.augmentation, seed=cfg.training.seed, per_channel=qc.per_channel,
            verbose=cfg.training.verbose, runtime=cfg.evaluation.runtime,
        )
        metrics["qat"] = qat.summary()
        metrics["qat"]["kernels"] = cfg.evaluation.runtime
        if qat.path is not None:
            source = qat.path
    console.print(f"quantizing {source.name} to int8 ({'per-channel' if qc.per_channel else 'per-tensor'}) ...")
    q = quantize_tflite(source, calibration, int8_path, per_channel=qc.per_channel)
    merge_extras(metrics, run_quant_extras(cfg, dataset, run_dir, eval_split=dataset.eval_split,
                                           calibration=calibration))
    metrics["quantization"] = {
        "file": int8_path.name, "source": source.name, "per_channel": cfg.quantization.per_channel,
        "calibration_images": len(calibration), "size_bytes": q.size_bytes,
        "input_scale": q.input_scale, "input_zero_point": q.input_zero_point,
        "seconds": round(time.time() - t0, 1),
    }
    return metrics


def _qopt(cfg, name: str, default):
    return getattr(cfg.quantization, name, default)


def run_quant_extras(cfg: Config, dataset: Dataset, run_dir: str | Path, eval_split: Split | None = None, onnx: bool | None = None,
                     mixed: bool | None = None, report: bool | None = None, options: dict | None = None,
                     calibration: Calibration | None = None) -> dict:
    """ONNX QDQ / mixed int4-int8 / per-layer report for a run directory, as ``cfg.quantization`` says.

    Reads ``float_model.keras`` (and ``model_int8.tflite`` for the report) from
    ``run_dir``; writes ``model_float.onnx``, ``model_qdq_int8.onnx``, the mixed
    model and ``quant_report.json``/``.png`` there. The mixed search scores the
    **validation** split; ``eval_split`` (e.g. the test split), when given, is
    used to report the top-1 of the written models. ``onnx``/``mixed``/``report``
    override the config flags; ``options`` overrides other settings by name
    (per_channel, calibration_method, calibration_samples, onnx_opset,
    onnx_activation_type, mixed_tolerance, mixed_confidence, mixed_max_evals,
    mixed_rank, report_images). ``calibration``: the calibration set already drawn
    (:func:`run_stage` passes its own, so that a run draws and decodes it once); without it,
    ``calibration_samples`` training images are drawn with the dataset's seed
    (:func:`~.calibration.draw_calibration`). Returns a dict for metrics.json.

    Longer than a screen: the three extras share the options, the preprocessing, the calibration images and
    the source model (the QAT copy where there is one), and each adds its block of metrics in turn.
    """
    from ..models.runner import runtime
    from ..models.scoring import evaluate_model
    from ..rundir import read_model_info
    from .mixed import search_mixed
    from .calibration import draw_calibration
    from .onnx_qdq import describe_qdq, export_float_onnx, export_qdq, float_onnx_name, weights_flash
    from .qat import int8_source
    from .report import REPORT_JSON, REPORT_PNG, quant_report, write_report

    run_dir = Path(run_dir)
    opts = dict(options or {})

    def opt(name, default):
        return opts[name] if opts.get(name) is not None else _qopt(cfg, name, default)

    do_onnx = bool(opt("onnx", False)) if onnx is None else onnx
    do_mixed = bool(opt("mixed", False)) if mixed is None else mixed
    do_report = bool(opt("report", False)) if report is None else report
    out: dict = {}
    if not (do_onnx or do_mixed or do_report):
        return out
    float_path = run_dir / rundir.FLOAT_MODEL
    if not float_path.is_file():
        raise McuzooError(f"quantization extras need {float_path}: train first")
    info = read_model_info(float_path)
    rescale, offset = rundir.input_scaling(info, cfg)
    class_names = list(dataset.class_names)
    if info and list(info.class_names) != class_names:
        raise McuzooError(f"{run_dir}: the dataset's classes differ from the model's (model_info.json)")
    per_channel = bool(opt("per_channel", True))
    method = str(opt("calibration_method", "minmax"))
    # the images the quantize stage calibrated the .tflite on (the same draw), else drawn here
    calib = calibration if calibration is not None else draw_calibration(
        cfg, dataset, opts.get("calibration_samples"), rescale, offset)
    bs = cfg.evaluation.batch_size

    def top1(path, split):
        return evaluate_model(path, split, class_names, rescale, offset, bs).top1

    # the int8 models come from the quantization-aware fine-tuned weights where the quantize stage made them
    source = int8_source(run_dir)
    tmpdir = None  # holds the QAT model's float ONNX, made only when the QDQ models need it
    mixed_float = run_dir / float_onnx_name()
    if do_onnx or do_mixed:
        t0 = time.time()
        opset = int(opt("onnx_opset", 17))
        console.print(f"ONNX QDQ int8 ({'per-channel' if per_channel else 'per-tensor'}, {method} calibration "
                      f"on {len(calib)} images{', from ' + source.name if source != float_path else ''}) ...")
        qsrc = float_path
        if source != float_path:  # model_float.onnx stays the float model; the QDQ model quantizes the QAT one
            export_float_onnx(float_path, run_dir / float_onnx_name(), opset)
            tmpdir = tempfile.TemporaryDirectory(prefix="mcuzoo_extras_")
            qsrc = mixed_float = export_float_onnx(source, Path(tmpdir.name) / "model_qat_float.onnx", opset)
        qdq = export_qdq(qsrc, calib, run_dir, per_channel=per_channel,
                         calibration_method=method, opset=opset,
                         activation_type=str(opt("onnx_activation_type", "int8")))
        d = describe_qdq(qdq)
        wf = weights_flash(qdq)
        out["onnx"] = {
            "file": qdq.name, "float_file": float_onnx_name(), "source": source.name, "per_channel": per_channel,
            "calibration_method": method, "calibration_images": len(calib), "opset": d["opset"],
            "size_bytes": qdq.stat().st_size, "weights_flash_bytes": wf.total_bytes,
            "seconds": round(time.time() - t0, 1),
        }
        if eval_split is not None:
            out["onnx"]["top1"] = round(top1(qdq, eval_split), 6)
            out["onnx"]["n"] = len(eval_split)
            out["onnx"]["runtime"] = runtime("onnxruntime")
    if do_mixed:
        t0 = time.time()
        tol = float(opt("mixed_tolerance", 0.015))
        conf = float(opt("mixed_confidence", 0.9))
        console.print(f"mixed int4/int8 weights search (within {100 * tol:g} points of int8 on validation, "
                      f"{100 * conf:g} % confidence) ...")
        res = search_mixed(
            mixed_float, calib,
            lambda p: evaluate_model(p, dataset.val, class_names, rescale, offset, bs).correct,
            tolerance=tol, out_dir=run_dir, per_channel=per_channel,
            calibration_method=method, activation_type=str(opt("onnx_activation_type", "int8")),
            rank=str(opt("mixed_rank", "sensitivity")), max_evals=int(opt("mixed_max_evals", 12)),
            confidence=conf,
        )
        m = res.summary()
        m.pop("path")
        m["source"] = source.name
        m["seconds"] = round(time.time() - t0, 1)
        if eval_split is not None:
            m["top1"] = round(top1(res.path, eval_split), 6)
            m["n"] = len(eval_split)
            m["runtime"] = runtime("onnxruntime")
        out["mixed"] = m
        console.print(f"mixed: {res.path.name}: weights flash {res.weights_bytes:,} B vs {res.weights_bytes_int8:,} B "
                      f"all-int8 (-{res.saving_pct:.1f} %), validation top-1 {100 * res.accuracy:.2f} % "
                      f"vs {100 * res.accuracy_int8:.2f} %")
    if do_report:
        int8_path = run_dir / rundir.INT8_TFLITE
        if not int8_path.is_file():
            raise McuzooError(f"the quantization report needs {int8_path}: run the quantize stage first")
        t0 = time.time()
        n_img = int(opt("report_images", 32))
        if n_img < 1:
            raise McuzooError(f"the quantization report needs at least 1 image, got report_images={n_img}")
        errors = quant_report(float_path, int8_path, calib, max_images=n_img)
        write_report(errors, run_dir / REPORT_PNG, run_dir / REPORT_JSON)
        out["report"] = {"json": REPORT_JSON, "png": REPORT_PNG, **errors.summary(),
                         "seconds": round(time.time() - t0, 1)}
    if tmpdir is not None:
        tmpdir.cleanup()
    return out


EXTRA_KEYS = (("onnx", "onnx_qdq"), ("mixed", "mixed"), ("report", "quant_report"))


def merge_extras(metrics: dict, extras: dict) -> dict:
    """metrics.json with run_quant_extras' results under their metrics keys (onnx -> onnx_qdq, ...)."""
    for key, name in EXTRA_KEYS:
        if key in extras:
            metrics[name] = extras[key]
    return metrics
