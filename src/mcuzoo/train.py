"""Training stage: Keras fit with the cards' callbacks, into a run directory.

Entry point: :func:`train`. Reads the dataset's train and validation splits only
(the test split never takes part in model selection), writes the best model by
validation accuracy to ``float_model.keras``, a CSV log and ``history.json``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rundir
from .config import Config
from .console import console
from .data import Dataset


@dataclass
class TrainResult:
    model_path: Path
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float
    seconds: float


def preprocess_fn(rescale: float, offset: float):
    """uint8 images -> float32 model input, as a tf.data map function."""
    import tensorflow as tf

    def fn(images, labels):
        return tf.cast(images, tf.float32) * rescale + offset, labels

    return fn


def _optimizer(cfg: Config):
    import keras

    t = cfg.training
    if t.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=t.learning_rate)
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=t.learning_rate, momentum=0.9)
    return keras.optimizers.RMSprop(learning_rate=t.learning_rate)


def _callbacks(cfg: Config, run_dir: Path, steps: int):
    import keras

    class BestCheckpoint(keras.callbacks.Callback):
        """Keep the best model by val_accuracy, saved atomically (temp file, then rename)."""

        def __init__(self, path: Path):
            super().__init__()
            self.path = path
            self.best = -math.inf
            self.best_epoch = 0

        def on_epoch_end(self, epoch, logs=None):
            acc = float((logs or {}).get("val_accuracy", -math.inf))
            if acc > self.best:
                self.best, self.best_epoch = acc, epoch + 1
                with rundir.atomic_path(self.path) as tmp:
                    self.model.save(tmp)

    class EpochLine(keras.callbacks.Callback):
        """One readable line per epoch, and a transient progress bar on a terminal."""

        def __init__(self, epochs: int):
            super().__init__()
            self.epochs = epochs
            self.progress = None

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()
            if console.is_terminal:
                from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

                self.progress = Progress(
                    TextColumn(f"epoch {epoch + 1}/{self.epochs}"), BarColumn(), TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(), console=console, transient=True,
                )
                self.task = self.progress.add_task("", total=steps, info="")
                self.progress.start()

        def on_train_batch_end(self, batch, logs=None):
            if self.progress is not None:
                logs = logs or {}
                info = f"loss {logs.get('loss', 0):.4f} acc {logs.get('accuracy', 0):.4f}"
                self.progress.update(self.task, completed=batch + 1, info=info)

        def on_epoch_end(self, epoch, logs=None):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None
            logs = logs or {}
            lr = logs.get("learning_rate")
            console.print(
                f"epoch {epoch + 1:>3}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}  "
                f"acc {logs.get('accuracy', float('nan')):.4f}  val_loss {logs.get('val_loss', float('nan')):.4f}  "
                f"val_acc {logs.get('val_accuracy', float('nan')):.4f}"
                + (f"  lr {float(lr):.2e}" if lr is not None else "")
                + f"  {time.time() - self.t0:.1f}s"
            )

    t = cfg.training
    best = BestCheckpoint(run_dir / rundir.FLOAT_MODEL)
    cbs = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_accuracy", mode="max", factor=t.reduce_lr.factor,
            patience=t.reduce_lr.patience, min_lr=t.reduce_lr.min_lr, verbose=0,
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=t.early_stopping.patience, restore_best_weights=False,
        ),
        best,
        keras.callbacks.CSVLogger(str(run_dir / rundir.TRAINING_LOG)),
    ]
    if t.verbose:
        cbs.append(EpochLine(t.epochs))
    return cbs, best


def train(cfg: Config, dataset: Dataset, run_dir: str | Path) -> TrainResult:
    """Train ``cfg.model`` from scratch on ``dataset`` and save the best model in ``run_dir``."""
    import keras

    from .models import build_model

    run_dir = Path(run_dir)
    keras.utils.set_random_seed(cfg.training.seed)
    model = build_model(cfg.model.name, tuple(cfg.model.input_shape), len(dataset.class_names), dropout=cfg.model.dropout)
    model.compile(
        optimizer=_optimizer(cfg),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    pre = preprocess_fn(cfg.preprocessing.rescale, cfg.preprocessing.offset)
    bs = cfg.training.batch_size
    train_ds = dataset.train.tf_dataset(bs, shuffle=True, seed=cfg.training.seed).map(pre)
    val_ds = dataset.val.tf_dataset(bs).map(pre)
    steps = max(1, math.ceil(len(dataset.train) / bs))
    callbacks, best = _callbacks(cfg, run_dir, steps)

    console.print(
        f"training [bold]{cfg.model.name}[/] {tuple(cfg.model.input_shape)} on {dataset.name}: "
        f"{len(dataset.train)} train / {len(dataset.val)} val images, {len(dataset.class_names)} classes, "
        f"{model.count_params():,} parameters"
    )
    t0 = time.time()
    history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.training.epochs, callbacks=callbacks, verbose=0)
    seconds = time.time() - t0
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    epochs_run = len(hist.get("loss", []))
    rundir.write_json(run_dir / rundir.HISTORY, {
        "epochs_run": epochs_run,
        "best_epoch": best.best_epoch,
        "best_val_accuracy": float(best.best),
        "seconds": round(seconds, 2),
        "images_per_second": round(epochs_run * len(dataset.train) / max(seconds, 1e-9), 1),
        "history": hist,
    })
    if not np.isfinite(best.best):
        from .errors import McuzooError

        raise McuzooError("training produced no validation accuracy (empty validation split?)")
    return TrainResult(run_dir / rundir.FLOAT_MODEL, epochs_run, best.best_epoch, float(best.best), seconds)
