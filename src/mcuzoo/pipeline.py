"""``mcuzoo run``: config -> dataset -> train -> quantize -> evaluate, into one run directory.

Entry point: :func:`run`. Stages talk only through the artifacts in the run
directory (see :mod:`mcuzoo.rundir` for their names).
"""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Iterator

from . import rundir
from .config import STAGES, Config, config_to_yaml
from .console import console
from .errors import ConfigError, DataError, McuzooError, RunDirError


# the metrics.json entries each stage writes (a resumed run that skips a stage keeps that stage's entries)
METRICS_OF_STAGE = {
    "train": ("training",),
    "quantize": ("qat", "quantization", "onnx_qdq", "mixed", "quant_report"),
    "evaluate": ("evaluation_split", "float", "int8"),
}


def _previous_metrics(run_dir: Path) -> dict:
    try:
        old = rundir.read_json(run_dir / rundir.METRICS)
    except RunDirError:  # none yet, or unreadable: nothing to keep
        return {}
    return old if isinstance(old, dict) else {}


#: what a run's trained model is made of: a resume may not change it (a new run may)
FIXED_ON_RESUME = ("model", "dataset", "preprocessing")


def _check_resume_overrides(saved: Config, cfg: Config, run_dir: Path) -> None:
    """Refuse overrides that the trained model cannot follow, before anything is written."""
    from .train import CHECKPOINTS, STATE

    if not ((run_dir / CHECKPOINTS / STATE).is_file() or (run_dir / rundir.FLOAT_MODEL).is_file()):
        return  # nothing trained yet: the run may still become anything
    old, new = saved.model_dump(mode="json"), cfg.model_dump(mode="json")
    for section in FIXED_ON_RESUME:
        for key in new[section]:
            if old[section].get(key) != new[section][key]:
                raise ConfigError(f"--resume cannot change {section}.{key} ({old[section].get(key)!r} -> "
                                  f"{new[section][key]!r}): {run_dir} was trained with it; start a new run instead")


@contextlib.contextmanager
def _dropped_on_failure(run_dir: Path, created: bool) -> Iterator[None]:
    """A run directory this run created is removed again when the run fails before its first checkpoint
    (bad data, refused initial weights, ...): a refused command leaves no orphan folder behind."""
    from .train import CHECKPOINTS, STATE

    try:
        yield
    except BaseException:
        if created and not (run_dir / CHECKPOINTS / STATE).is_file():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def check_config(cfg: Config, resume: bool = False) -> None:
    """Every check of a config that needs no data, beyond its schema: the model exists and can take the input
    shape, the initial weights are there. ``mcuzoo config`` and ``mcuzoo run`` (before it reads any data) both
    call it, so that a config that ``config`` accepts fails in ``run`` only for what its data says."""
    from .models import count_model, get_model_spec

    spec = get_model_spec(cfg.model.name)  # unknown model: ConfigError naming the known ones
    if spec.counter is not None:  # the input shape against the model's own limits (e.g. SqueezeNet's 35x35)
        count_model(spec.name, cfg.model.input_shape, 2)
    init = cfg.training.initial_weights
    if not resume and "train" in cfg.stages and init:
        if not Path(init).is_file():
            raise McuzooError(f"training.initial_weights: model file not found: {Path(init).resolve()}")
        if Path(init).suffix.lower() != ".keras":
            raise ConfigError(f"training.initial_weights: {init} is not a .keras model file")


def run(cfg: Config | None = None, resume: str | Path | None = None, overrides: list[str] | None = None) -> Path:
    """Run the configured stages; return the run directory.

    With ``resume``, continue the run in that directory from its last checkpoint
    (its saved config.yaml, with ``overrides`` applied, e.g. more epochs).
    """
    from .config import load_config
    from .data import load_run_dataset
    from .evaluate import evaluate_model
    from .rundir import ModelInfo
    from .train import is_chief

    t_start = time.time()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / rundir.CONFIG).is_file():
            raise McuzooError(f"cannot resume {run_dir}: no {rundir.CONFIG} there (not a run directory?)")
        saved = load_config(run_dir / rundir.CONFIG)
        saved_stages = saved.stages
        cfg = load_config(run_dir / rundir.CONFIG, overrides)
        _check_resume_overrides(saved, cfg, run_dir)
    elif cfg is None:
        raise McuzooError("run needs a config or a run directory to resume")
    check_config(cfg, resume=resume is not None)  # what needs no data fails before anything is read or written
    shape = cfg.model.input_shape
    dataset = load_run_dataset(cfg)
    if len(dataset.class_names) < 2:  # checked before a run directory exists
        raise DataError(f"dataset {dataset.name} has {len(dataset.class_names)} class(es): a classifier needs at least 2")
    if "train" in cfg.stages and (dataset.val is None or not len(dataset.val)):
        raise DataError(f"dataset {dataset.name}: the validation split is empty (raise dataset.validation_split, "
                        "or give more images per class)")
    chief = is_chief(cfg)
    if not chief:  # a multi-worker helper: trains, writes nothing of the run
        import tempfile

        from .train import train

        train(cfg, dataset, Path(tempfile.mkdtemp(prefix="mcuzoo-worker-")))
        return Path(cfg.output_dir)
    if resume is None:
        run_dir = rundir.new_run_dir(cfg.output_dir, cfg.name)
    with rundir.RunLock(run_dir), _dropped_on_failure(run_dir, created=resume is None):
        for folder in (run_dir, run_dir / "checkpoints"):  # what a killed writer left behind
            rundir.remove_temp_files(folder)
        console.print(f"{'resuming' if resume is not None else 'run directory:'} [bold]{run_dir}[/]")
        kept = cfg
        if resume is not None:  # `stages=[evaluate]` on a resume runs those stages now; the run keeps all it had
            kept = cfg.model_copy(update={"stages": [s for s in STAGES if s in saved_stages or s in cfg.stages]})
        rundir.write_text(run_dir / rundir.CONFIG, config_to_yaml(kept))
        for note in dataset.notes:
            console.print(f"[yellow]note:[/] {note}")
        info = ModelInfo(
            class_names=list(dataset.class_names), input_shape=shape,
            rescale=cfg.preprocessing.rescale, offset=cfg.preprocessing.offset,
            model=cfg.model.name, dataset=dataset.name, interpolation=cfg.preprocessing.interpolation,
            aspect=cfg.preprocessing.aspect,
        )
        rundir.write_json(run_dir / rundir.MODEL_INFO, info.to_json())
        if dataset.skipped_files:
            rundir.write_text(run_dir / "skipped_files.txt", "\n".join(dataset.skipped_files) + "\n")
            console.print(f"[yellow]note:[/] skipped {len(dataset.skipped_files)} unreadable files "
                          f"(listed in {run_dir / 'skipped_files.txt'})")
        metrics: dict = {
            "model": cfg.model.name, "dataset": dataset.name, "input_shape": list(shape),
            "num_classes": len(dataset.class_names), "notes": list(dataset.notes),
            "skipped_files": len(dataset.skipped_files),
        }

        float_path = run_dir / rundir.FLOAT_MODEL
        int8_path = run_dir / rundir.INT8_TFLITE
        if "train" in cfg.stages:
            from .train import train

            res = train(cfg, dataset, run_dir, resume=resume is not None)
            metrics["training"] = {
                "epochs_run": res.epochs_run, "best_epoch": res.best_epoch, "stopped_early": res.stopped_early,
                "best_val_accuracy": round(res.best_val_accuracy, 6), "seconds": round(res.seconds, 1),
                "replicas": res.replicas, "distribution": cfg.training.distribution,
            }
        if "quantize" in cfg.stages:
            from .quantization import run_stage as quantize_stage

            metrics.update(quantize_stage(cfg, dataset, run_dir))
        if "evaluate" in cfg.stages:
            split_name, split = dataset.eval_split_name, dataset.eval_split
            if split_name != "test":
                console.print("[yellow]note:[/] no test split: evaluating on the validation split")
            metrics["evaluation_split"] = split_name
            framed = _emnist_framed(split, cfg) if cfg.evaluation.emnist_framing else None
            for key, path in (("float", float_path), ("int8", int8_path)):
                if not path.is_file():
                    continue
                ev = evaluate_model(
                    path, split, dataset.class_names, cfg.preprocessing.rescale, cfg.preprocessing.offset,
                    cfg.evaluation.batch_size, cfg.evaluation.runtime, cfg.evaluation.workers or None,
                )
                metrics[key] = ev.summary()
                metrics[key]["file"] = path.name
                metrics[key]["confusion"] = ev.confusion
                how = f" ({ev.summary()['kernels_label']})" if ev.kernels else ""
                console.print(f"{key:>5} top-1 on {split_name} ({ev.n} images{how}): [bold]{100 * ev.top1:.2f} %[/]")
                if framed is not None:
                    fr = evaluate_model(path, framed, dataset.class_names, cfg.preprocessing.rescale,
                                        cfg.preprocessing.offset, cfg.evaluation.batch_size,
                                        cfg.evaluation.runtime, cfg.evaluation.workers or None)
                    metrics[key]["top1_emnist_framing"] = round(fr.top1, 6)
                    console.print(f"{key:>5} top-1 on {split_name}, glyphs framed as EMNIST: "
                                  f"[bold]{100 * fr.top1:.2f} %[/]")
        if "analyze" in cfg.stages:
            from .analysis import analyze

            target = int8_path if int8_path.is_file() else float_path
            if not target.is_file():
                raise McuzooError(f"analyze stage needs {int8_path} or {float_path}")
            from .analysis.boards import load_board_file

            board = load_board_file(cfg.analysis.board_file) if cfg.analysis.board_file else None
            aj = analyze(target, board, plot=run_dir / "memory_timeline.png", runtime=cfg.analysis.runtime).to_json()
            rundir.write_json(run_dir / rundir.ANALYSIS, aj)
            console.print(
                f"analysis of {target.name}: weights flash {aj['weights_bytes'] / 1024:.2f} KiB, activation RAM "
                f"{aj['activation_bytes'] / 1024:.2f} KiB (input/output in the arena)"
                + (f", TFLM arena {aj['tflm_arena_bytes'] / 1024:.2f} KiB" if aj.get("tflm_arena_bytes") else "")
                + f", {aj['macs']:,} MACs; "
                f"fits on: {', '.join(aj['fits_on']) or 'no listed board'}"
            )
        if "export" in cfg.stages:
            from .export import export_model

            if not int8_path.is_file():
                raise McuzooError(f"export stage needs {int8_path} (the quantize stage)")
            ex = export_model(run_dir, run_dir / rundir.EXPORT, offline_plan=cfg.export.offline_plan)
            for note in ex.notes:
                console.print(f"[yellow]note:[/] {note}")
            console.print(f"TFLM export: {ex.out_dir} (kTensorArenaSize {ex.tensor_arena_size:,} B, "
                          f"{len(ex.operators)} operators)")
        metrics["seconds_total"] = round(time.time() - t_start, 1)
        if resume is not None:  # what the stages that did not run now measured before stays
            old = _previous_metrics(run_dir)
            for stage, keys in METRICS_OF_STAGE.items():
                if stage not in cfg.stages:
                    metrics.update({k: old[k] for k in keys if k in old and k not in metrics})
            order = list(old) + [k for k in metrics if k not in old]  # the file's own order, for readable diffs
            metrics = {k: metrics[k] for k in sorted(metrics, key=order.index)}
        rundir.write_json(run_dir / rundir.METRICS, metrics)
        if "card" in cfg.stages:  # last: the card reads every other artifact of the run
            from .card import write_card

            console.print(f"model card: {write_card(run_dir)}")
    console.print(f"done in {time.time() - t_start:.0f} s: {run_dir}")
    return run_dir


def _emnist_framed(split, cfg):
    """The evaluation split with its glyphs framed as NIST's EMNIST (``evaluation.emnist_framing``)."""
    from dataclasses import replace

    from .data.core import resize_images

    if split.images is None:
        raise McuzooError("evaluation.emnist_framing needs an in-memory dataset (IDX or built-in glyphs)")
    shape = cfg.model.input_shape
    return replace(split, images=resize_images(split.images, shape, cfg.preprocessing.interpolation, "emnist"))
