"""Evaluation stage: top-1, per-class accuracy and confusion matrix of a model file.

Entry points: :func:`run_stage` (the stage of ``mcuzoo run``) and :func:`evaluate_model` (:mod:`mcuzoo.models.scoring`), for .keras, .tflite
and .onnx files, each run by its runtime (:mod:`mcuzoo.models.runner`). The quantization
stage scores its candidates with the same function, upstream of this stage; this module
keeps the evaluate stage's names in one place.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import rundir
from .console import console
from .errors import McuzooError
from .models.runner import MAX_INPUT_ELEMENTS, kernels_of, open_model, runtime
from .models.scoring import EvalResult, PairedDifference, evaluate_model, paired_difference, score
from .rundir import ModelInfo, read_model_info

if TYPE_CHECKING:
    from .config import Config
    from .data import Dataset, Split

__all__ = ["evaluate_model", "EvalResult", "score", "open_model", "kernels_of", "runtime", "MAX_INPUT_ELEMENTS",
           "PairedDifference", "paired_difference", "ModelInfo", "read_model_info", "run_stage"]


# ----------------------------------------------------------------------------- scoring a model on data it has seen

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402


@dataclass
class Overlap:
    """How many of the images a model is scored on were in its own run's training or validation split."""

    images: int  # scored
    train: int  # of them, in the run's training split
    val: int  # of them, in the run's validation split
    run_config: str  # where the split came from
    test_images: int | None = None  # the run's own test split, which --split test scores
    assumed: bool = False  # the run's data folder is not on this machine: the scored folder was taken for it

    @property
    def seen(self) -> int:
        return self.train + self.val

    def to_json(self) -> dict:
        return {"images": self.images, "in_training_split": self.train, "in_validation_split": self.val,
                "run_config": self.run_config, "run_test_images": self.test_images,
                "assumed_same_data": self.assumed}

    def warning(self) -> str:
        test = (f" `--split test` scores the run's own test split ({self.test_images:,} images) instead."
                if self.test_images else " The run has no test split: `--split validation` scores its validation split.")
        assumed = (" (the run's data folder is not here; taking this folder for it, as the run's seeded split"
                   " would divide it)") if self.assumed else ""
        return (f"{self.seen:,} of the {self.images:,} images ({100 * self.seen / self.images:.1f} %) are in the "
                f"model's own training ({self.train:,}) or validation ({self.val:,}) split, by {self.run_config}"
                f"{assumed}: this is not a test score and overstates the accuracy.{test}")


def run_config_of(model_path: str | Path) -> Path | None:
    """The config.yaml of the run (or zoo folder) a model file lies in, if any."""
    p = Path(model_path).parent / "config.yaml"
    return p if p.is_file() else None


def data_overlap(run_cfg, run_config_path: str | Path, data_path: str, split, class_names: list[str]) -> Overlap | None:
    """How ``split`` (``mcuzoo evaluate``'s images from ``data_path``) overlaps the run's training and validation
    splits; None when it does not or cannot be told (a built-in dataset, whose test images are generated
    apart; a run whose data cannot be loaded here, or of other classes).

    The run's dataset is loaded as its config says; where its folder is not on this machine (a zoo model
    from another checkout), with ``dataset.path`` set to ``data_path``.
    """
    import os

    from .data import builtin, emnist, load_dataset
    from .errors import McuzooError

    dc = run_cfg.dataset
    here = Path(str(data_path)).expanduser()
    if dc.name in builtin.BUILTIN or not here.exists():
        return None
    assumed = not (dc.path and Path(dc.path).expanduser().exists())
    if assumed:
        dc = dc.model_copy(update={"path": str(data_path)})
    try:
        dataset = load_dataset(dc, tuple(split.image_shape), split.interpolation, aspect=split.aspect)
    except McuzooError:
        return None
    if list(dataset.class_names) != list(class_names):
        return None
    test_n = len(dataset.test) if dataset.test is not None else None
    if split.paths is not None:  # image files: compare them one by one
        train = {os.path.realpath(p) for p in dataset.train.paths or []}
        val = {os.path.realpath(p) for p in dataset.val.paths or []}
        scored = [os.path.realpath(p) for p in split.paths]
        n_train, n_val = sum(p in train for p in scored), sum(p in val for p in scored)
        if not n_train and not n_val:
            return None
        return Overlap(len(scored), n_train, n_val, str(run_config_path), test_n, assumed)
    if run_cfg.dataset.name != "emnist_byclass" or os.path.realpath(here) != os.path.realpath(Path(dc.path).expanduser()):
        return None
    # EMNIST in memory: evaluate reads the test file where there is one, else the training file, whole
    if here.is_dir() and emnist.find_pair(here, "train") is not None:
        reads_train = emnist.find_pair(here, "test") is None
    else:
        mat = emnist.find_mat(here)
        reads_train = mat is not None and emnist.open_mat(mat)["test"] is None
    if not reads_train:
        return None
    return Overlap(len(split), len(dataset.train), len(dataset.val), str(run_config_path), test_n, assumed)


# ----------------------------------------------------------------------------- the stage of mcuzoo run


def run_stage(cfg: Config, dataset: Dataset, run_dir: str | Path) -> dict:
    """Score the run's float and int8 models on its evaluation split (test, else validation); metrics.json's
    ``evaluation_split``, ``float`` and ``int8`` entries (with ``evaluation.emnist_framing``, also framed as EMNIST)."""
    run_dir = Path(run_dir)
    float_path = run_dir / rundir.FLOAT_MODEL
    int8_path = run_dir / rundir.INT8_TFLITE
    split_name, split = dataset.eval_split_name, dataset.eval_split
    if split_name != "test":
        console.print("[yellow]note:[/] no test split: evaluating on the validation split")
    metrics: dict = {"evaluation_split": split_name}
    framed = _emnist_framed(split, cfg) if cfg.evaluation.emnist_framing else None
    rescale, offset = rundir.input_scaling(read_model_info(float_path), cfg)
    for key, path in (("float", float_path), ("int8", int8_path)):
        if not path.is_file():
            continue
        def scored(images: Split, path: Path = path) -> EvalResult:
            return evaluate_model(path, images, dataset.class_names, rescale, offset,
                                  cfg.evaluation.batch_size, cfg.evaluation.runtime,
                                  cfg.evaluation.workers or None)

        ev = scored(split)
        metrics[key] = ev.summary()
        metrics[key]["file"] = path.name
        metrics[key]["confusion"] = ev.confusion
        how = f", {metrics[key]['kernels_label']}" if ev.kernels else ""
        console.print(f"{key:>5} top-1 on {split_name} ({ev.n} images{how}): [bold]{100 * ev.top1:.2f} %[/]")
        if framed is not None:
            fr = scored(framed)
            metrics[key]["top1_emnist_framing"] = round(fr.top1, 6)
            console.print(f"{key:>5} top-1 on {split_name}, glyphs framed as EMNIST: "
                          f"[bold]{100 * fr.top1:.2f} %[/]")
    return metrics


def _emnist_framed(split: Split, cfg: Config) -> Split:
    """The evaluation split with its glyphs framed as NIST's EMNIST (``evaluation.emnist_framing``)."""
    from dataclasses import replace

    from .data.core import resize_images

    if split.images is None:
        raise McuzooError("evaluation.emnist_framing needs an in-memory dataset (IDX or built-in glyphs)")
    shape = cfg.model.input_shape
    return replace(split, images=resize_images(split.images, shape, cfg.preprocessing.interpolation, "emnist"))
