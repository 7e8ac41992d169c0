"""``mcuzoo run``: config -> dataset -> train -> quantize -> evaluate, into one run directory.

Entry point: :func:`run`. Stages talk only through the artifacts in the run
directory (see :mod:`mcuzoo.rundir` for their names).
"""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import rundir
from .config import STAGES, Config, config_to_yaml
from .console import console
from .errors import ConfigError, DataError, McuzooError, RunDirError

if TYPE_CHECKING:
    from .data import Dataset


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

    The checks before anything is written come first, then one call per stage in the flow's order
    (:data:`mcuzoo.config.STAGES`), so that the order of the stages reads top to bottom in one place.
    """
    from .data import load_run_dataset
    from .train import is_chief

    t_start = time.time()
    saved_stages: list[str] = []
    if resume is not None:
        run_dir, cfg, saved_stages = _resumed(Path(resume), overrides)
    elif cfg is None:
        raise McuzooError("run needs a config or a run directory to resume")
    check_config(cfg, resume=resume is not None)  # what needs no data fails before anything is read or written
    dataset = load_run_dataset(cfg)
    _check_dataset(cfg, dataset)
    if not is_chief(cfg):  # a multi-worker helper: trains, writes nothing of the run
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
        metrics = _start_run(cfg, dataset, run_dir)
        metrics.update(_run_stages(cfg, dataset, run_dir, resume is not None))
        metrics["seconds_total"] = round(time.time() - t_start, 1)
        if resume is not None:
            metrics = _with_previous_metrics(metrics, cfg, run_dir)
        rundir.write_json(run_dir / rundir.METRICS, metrics)
        if "card" in cfg.stages:  # last: the card reads every other artifact of the run
            from .card import write_card

            console.print(f"model card: {write_card(run_dir)}")
    console.print(f"done in {time.time() - t_start:.0f} s: {run_dir}")
    return run_dir


def _resumed(run_dir: Path, overrides: list[str] | None) -> tuple[Path, Config, list[str]]:
    """(run directory, config with ``overrides``, the stages it was saved with) of a run to resume."""
    from .config import load_config

    if not (run_dir / rundir.CONFIG).is_file():
        raise McuzooError(f"cannot resume {run_dir}: no {rundir.CONFIG} there (not a run directory?)")
    saved = load_config(run_dir / rundir.CONFIG)
    cfg = load_config(run_dir / rundir.CONFIG, overrides)
    _check_resume_overrides(saved, cfg, run_dir)
    return run_dir, cfg, list(saved.stages)


def _check_dataset(cfg: Config, dataset: Dataset) -> None:
    """What the dataset must have for the run, checked before a run directory exists."""
    if len(dataset.class_names) < 2:
        raise DataError(f"dataset {dataset.name} has {len(dataset.class_names)} class(es): a classifier needs at least 2")
    if "train" in cfg.stages and (dataset.val is None or not len(dataset.val)):
        raise DataError(f"dataset {dataset.name}: the validation split is empty (raise dataset.validation_split, "
                        "or give more images per class)")


def _run_stages(cfg: Config, dataset: Dataset, run_dir: Path, resume: bool) -> dict:
    """Run the configured stages from train to export, in the flow's order; the metrics.json entries they give."""
    metrics: dict = {}
    if "train" in cfg.stages:
        metrics["training"] = _train_stage(cfg, dataset, run_dir, resume)
    if "quantize" in cfg.stages:
        from .quantization import run_stage as quantize_stage

        metrics.update(quantize_stage(cfg, dataset, run_dir))
    if "evaluate" in cfg.stages:
        from .evaluate import run_stage as evaluate_stage

        metrics.update(evaluate_stage(cfg, dataset, run_dir))
    if "analyze" in cfg.stages:
        _analyze_stage(cfg, run_dir)
    if "export" in cfg.stages:
        _export_stage(cfg, run_dir)
    return metrics


def _with_previous_metrics(metrics: dict, cfg: Config, run_dir: Path) -> dict:
    """A resumed run's metrics: what the stages that did not run now measured before stays, in the file's
    own order (for readable diffs)."""
    old = _previous_metrics(run_dir)
    for stage, keys in METRICS_OF_STAGE.items():
        if stage not in cfg.stages:
            metrics.update({k: old[k] for k in keys if k in old and k not in metrics})
    order = list(old) + [k for k in metrics if k not in old]
    return {k: metrics[k] for k in sorted(metrics, key=order.index)}


def _start_run(cfg: Config, dataset: Dataset, run_dir: Path) -> dict:
    """Write the run's model_info.json (and skipped_files.txt); the first metrics.json entries."""
    from .rundir import ModelInfo

    shape = cfg.model.input_shape
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
    return metrics


def _train_stage(cfg: Config, dataset: Dataset, run_dir: Path, resume: bool) -> dict:
    """Train (or continue training) into ``run_dir``; metrics.json's ``training`` entry."""
    from .train import train

    res = train(cfg, dataset, run_dir, resume=resume)
    return {
        "epochs_run": res.epochs_run, "best_epoch": res.best_epoch, "stopped_early": res.stopped_early,
        "best_val_accuracy": round(res.best_val_accuracy, 6), "seconds": round(res.seconds, 1),
        "replicas": res.replicas, "distribution": cfg.training.distribution,
    }


def _analyze_stage(cfg: Config, run_dir: Path) -> None:
    """analysis.json and memory_timeline.png of the int8 model (the float model without one)."""
    float_path = run_dir / rundir.FLOAT_MODEL
    int8_path = run_dir / rundir.INT8_TFLITE
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


def _export_stage(cfg: Config, run_dir: Path) -> None:
    """The TFLM export of the int8 model (``export/``)."""
    int8_path = run_dir / rundir.INT8_TFLITE
    from .export import export_model

    if not int8_path.is_file():
        raise McuzooError(f"export stage needs {int8_path} (the quantize stage)")
    ex = export_model(run_dir, run_dir / rundir.EXPORT, offline_plan=cfg.export.offline_plan)
    for note in ex.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"TFLM export: {ex.out_dir} (kTensorArenaSize {ex.tensor_arena_size:,} B, "
                  f"{len(ex.operators)} operators)")
