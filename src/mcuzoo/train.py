"""Training stage: from scratch (or from ``training.initial_weights``), with the cards' callbacks, checkpointed every epoch.

Entry point: :func:`train`. It reads the dataset's train and validation splits
only (the test split never takes part in model selection) and writes into the
run directory:

- ``float_model.keras``: the best model by validation accuracy (weights only, no optimizer state);
- ``checkpoints/epoch_NNNN.keras`` + ``checkpoints/state.json``: the last
  epoch's model with its optimizer state, and everything else a resumed run
  needs (epoch, learning rate, ReduceLROnPlateau / EarlyStopping counters, best
  accuracy, dropout RNG states, the per-epoch history). ``state.json`` is
  written last and names its checkpoint, so a kill at any moment leaves a
  consistent pair;
- ``training_log.csv`` and ``history.json``.

Training runs one ``fit`` call per epoch, each epoch shuffled with its own seed
(``seed * 1000 + epoch``), and the plateau / early-stopping logic lives here
rather than in Keras callbacks (whose counters reset on every ``fit``); the
``cosine`` schedule (``training.lr_schedule``) sets each epoch's rate from the epoch alone, so that
``mcuzoo run --resume RUN_DIR`` continues a killed run to the same final model
as an uninterrupted one.

Distribution (``training.distribution``): ``none``, ``mirrored`` (all local
GPUs, or ``training.cpu_devices`` logical CPUs) or ``multi_worker`` (TF_CONFIG,
or ``training.cluster``). ``training.batch_size`` is per replica; the learning
rate is multiplied by the number of replicas when ``scale_learning_rate`` is on.
Only the chief writes to the run directory.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import rundir
from .config import Config
from .console import console
from .data import Dataset
from .errors import McuzooError, RunDirError

CHECKPOINTS = "checkpoints"
STATE = "state.json"
MIN_DELTA_LR = 1e-4  # Keras ReduceLROnPlateau's default min_delta


@dataclass
class TrainResult:
    model_path: Path
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    replicas: int = 1
    stopped_early: bool = False


@dataclass
class TrainState:
    """Everything besides the model that a resumed run needs. ``epoch`` = epochs completed."""

    epoch: int = 0
    learning_rate: float = 0.0
    best_val_accuracy: float = -1.0
    best_epoch: int = 0
    lr_best: float = -1.0  # below any accuracy: no plateau best yet (older runs wrote -Infinity)
    lr_wait: int = 0
    es_wait: int = 0
    stopped_early: bool = False
    checkpoint: str = ""
    seconds: float = 0.0
    seed_states: list = field(default_factory=list)
    history: list = field(default_factory=list)

    def update(self, logs: dict, cfg: Config) -> float | None:
        """Apply ReduceLROnPlateau and EarlyStopping (mode max on val_accuracy); return a new lr or None."""
        t = cfg.training
        acc = float(logs.get("val_accuracy", -1.0))
        self.epoch += 1
        if acc > self.best_val_accuracy:
            self.best_val_accuracy, self.best_epoch = acc, self.epoch
            self.es_wait = 0
        else:
            self.es_wait += 1
            if self.es_wait >= t.early_stopping.patience:
                self.stopped_early = True
        if t.lr_schedule.name != "plateau":  # a fixed schedule: scheduled_lr sets the rate
            return None
        new_lr = None
        if acc - MIN_DELTA_LR > self.lr_best:
            self.lr_best, self.lr_wait = acc, 0
        else:
            self.lr_wait += 1
            if self.lr_wait >= t.reduce_lr.patience and self.learning_rate > t.reduce_lr.min_lr:
                new_lr = max(self.learning_rate * t.reduce_lr.factor, t.reduce_lr.min_lr)
                self.lr_wait = 0
        return new_lr


def scheduled_lr(cfg: Config, epoch: int, base_lr: float) -> float | None:
    """The learning rate of 0-based ``epoch`` under ``training.lr_schedule``; None for ``plateau``
    (whose rate :meth:`TrainState.update` changes from the validation accuracy)."""
    t = cfg.training
    sch = t.lr_schedule
    if sch.name != "cosine":
        return None
    min_lr = sch.min_lr * base_lr / t.learning_rate  # scaled with the replicas like the base rate
    if epoch < sch.warmup_epochs:
        return base_lr * (epoch + 1) / (sch.warmup_epochs + 1)
    span = max(1, t.epochs - 1 - sch.warmup_epochs)
    progress = min(1.0, (epoch - sch.warmup_epochs) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def preprocess_fn(rescale: float, offset: float):
    """uint8 images -> float32 model input, as a tf.data map function."""
    from .data import preprocess

    def fn(images, labels):
        return preprocess(images, rescale, offset), labels

    return fn


# ---------------------------------------------------------------------------
# distribution


def _cluster_env(cfg: Config) -> dict | None:
    """The multi-worker cluster: TF_CONFIG if set, else training.cluster."""
    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            tf_config = json.loads(raw)
            workers = tf_config["cluster"]["worker"]
            task = tf_config["task"]
            return {"workers": list(workers), "index": int(task["index"]), "type": task.get("type", "worker")}
        except (ValueError, KeyError, TypeError):
            raise McuzooError("TF_CONFIG is set but is not valid JSON with cluster.worker and task.index") from None
    c = cfg.training.cluster
    if c is None:
        return None
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": c.workers}, "task": {"type": "worker", "index": c.task_index}})
    return {"workers": list(c.workers), "index": c.task_index, "type": "worker"}


def is_chief(cfg: Config) -> bool:
    if cfg.training.distribution != "multi_worker":
        return True
    env = _cluster_env(cfg)
    return env is None or (env["type"] in ("worker", "chief") and env["index"] == 0)


def make_strategy(cfg: Config):
    """The tf.distribute strategy of ``training.distribution`` (None for a single device)."""
    import tensorflow as tf

    t = cfg.training
    if t.cpu_devices and t.cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(t.cpu_devices)]
            )
        except RuntimeError:  # already initialised in this process: keep what exists
            pass
    if t.distribution == "none":
        return None
    if t.distribution == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    env = _cluster_env(cfg)
    if env is None:
        raise McuzooError("training.distribution=multi_worker needs TF_CONFIG or training.cluster")
    comm = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)


# ---------------------------------------------------------------------------
# checkpoints


def _seed_states(model) -> list:
    return [np.asarray(v).tolist() for v in model.variables if "seed_generator_state" in v.path]


def _restore_seed_states(model, states: list) -> None:
    variables = [v for v in model.variables if "seed_generator_state" in v.path]
    for v, s in zip(variables, states):
        v.assign(np.asarray(s, dtype=v.dtype))


def read_state(run_dir: Path) -> TrainState | None:
    path = run_dir / CHECKPOINTS / STATE
    if not path.is_file():
        return None
    try:  # strict JSON, except the -Infinity that older runs wrote for lr_best
        data = rundir.parse_json(path.read_text(encoding="utf-8"),
                                 lambda c: -1.0 if c == "-Infinity" else rundir.no_json_constant(c))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise RunDirError(f"{path} is not valid JSON") from None
    try:
        state = TrainState(**data)
    except TypeError:
        raise RunDirError(f"{path} is not a mcuzoo training state") from None
    ints = ("epoch", "best_epoch", "lr_wait", "es_wait")
    floats = ("learning_rate", "best_val_accuracy", "lr_best", "seconds")
    if not (all(type(getattr(state, k)) is int and 0 <= getattr(state, k) <= 10**9 for k in ints)
            and all(type(getattr(state, k)) in (int, float) and math.isfinite(getattr(state, k)) for k in floats)
            and isinstance(state.stopped_early, bool) and isinstance(state.checkpoint, str)
            and isinstance(state.seed_states, list) and isinstance(state.history, list)
            and all(isinstance(r, dict) for r in state.history)):
        raise RunDirError(f"{path} is not a mcuzoo training state (a field has the wrong type or range)")
    if state.checkpoint:  # a name inside checkpoints/, never a path that leads elsewhere
        rundir.safe_join(path.parent, state.checkpoint, f"checkpoint in {path}")
        if "/" in state.checkpoint:
            raise RunDirError(f"checkpoint in {path}: {state.checkpoint!r} is not a file name in {path.parent}")
    return state


def _write_log(run_dir: Path, state: TrainState) -> None:
    keys = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for row in state.history:
        w.writerow(row)
    rundir.write_text(run_dir / rundir.TRAINING_LOG, buf.getvalue())


def _save_checkpoint(model, run_dir: Path, state: TrainState, chief: bool) -> None:
    """Model (with optimizer) first, then the state naming it; then drop older checkpoints."""
    if not chief:  # every worker must save (collective ops), only the chief keeps it
        tmp = Path(tempfile.mkdtemp(prefix="mcuzoo-worker-"))
        model.save(tmp / "ckpt.keras")
        shutil.rmtree(tmp, ignore_errors=True)
        return
    ckdir = run_dir / CHECKPOINTS
    name = f"epoch_{state.epoch:04d}.keras"
    with rundir.atomic_path(ckdir / name) as tmp:
        model.save(tmp)
    state.checkpoint = name
    state.seed_states = _seed_states(model)
    rundir.write_json(ckdir / STATE, asdict(state))
    for old in ckdir.glob("epoch_*.keras"):
        if old.name != name:
            old.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# progress


def _progress_callback(epochs: int, steps: int):
    import keras

    class BatchProgress(keras.callbacks.Callback):
        """A transient progress bar within each epoch, on a terminal only."""

        def __init__(self):
            super().__init__()
            self.progress: Any = None  # a rich Progress once an epoch begins
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            from .console import step_bar

            self.progress, self.task = step_bar(f"epoch {epoch + 1}/{epochs}", steps)

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            info = f"loss {float(logs.get('loss', 0)):.4f} acc {float(logs.get('accuracy', 0)):.4f}"
            self.progress.update(self.task, completed=batch + 1, info=info)

        def on_epoch_end(self, epoch, logs=None):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return BatchProgress()


def _epoch_line(row: dict, epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
        f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  lr {row['learning_rate']:.2e}  "
        f"{row['seconds']:.1f}s"
    )


# ---------------------------------------------------------------------------


def _load_initial_weights(model, path: str) -> None:
    """Copy the weights of the .keras model at ``path`` into ``model``, which must have the same layers and shapes."""
    from .models import load_keras_model

    try:
        src = load_keras_model(path)
    except McuzooError as e:
        raise McuzooError(f"training.initial_weights: {e}") from None
    ours = {layer.name: layer for layer in model.layers if layer.weights}
    theirs = {layer.name: layer for layer in src.layers if layer.weights}
    if sorted(ours) != sorted(theirs):
        missing = sorted(set(ours) ^ set(theirs))
        raise McuzooError(f"training.initial_weights {path}: not the same model as {model.name} "
                          f"(layers differ: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    for name, layer in ours.items():
        a = [tuple(w.shape) for w in layer.weights]
        b = [tuple(w.shape) for w in theirs[name].weights]
        if a != b:
            raise McuzooError(f"training.initial_weights {path}: layer {name!r} has weights {b}, this model needs {a} "
                              "(another input shape or class count?)")
    for name, layer in ours.items():
        layer.set_weights(theirs[name].get_weights())


def train(cfg: Config, dataset: Dataset, run_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train ``cfg.model`` from scratch on ``dataset`` into ``run_dir`` (or continue it with ``resume``)."""
    import keras

    policy = keras.mixed_precision.global_policy()
    try:
        if cfg.training.mixed_precision != "none":
            keras.mixed_precision.set_global_policy(cfg.training.mixed_precision)
        return _train(cfg, dataset, Path(run_dir), resume)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train(cfg: Config, dataset: Dataset, run_dir: Path, resume: bool) -> TrainResult:
    """:func:`train` under the precision policy it set: the model (new, or the checkpoint's), then the epochs
    left (:class:`_EpochLoop`), then history.json."""
    import tensorflow as tf

    t = cfg.training
    setup = _Setup.of(cfg)
    state = read_state(run_dir) if resume else None
    model, state = _model_and_state(cfg, dataset, run_dir, state, setup)
    if state.stopped_early or state.epoch >= t.epochs:
        console.print(f"training already finished at epoch {state.epoch}: nothing to resume")
        if setup.chief:  # e.g. a long run cut short with `--resume RUN training.epochs=N`: its history still goes out
            _write_history(run_dir, state, setup.replicas, setup.global_batch, len(dataset.train))
        return _result(run_dir, state, setup.replicas)

    from .data import augment_fn

    pre = preprocess_fn(cfg.preprocessing.rescale, cfg.preprocessing.offset)
    aug = augment_fn(cfg.augmentation, t.seed)  # training images only; None when every rate is 0
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    val_ds = dataset.val.tf_dataset(setup.global_batch, cache=True).map(pre).with_options(options)
    loop = _EpochLoop(cfg, dataset, run_dir, setup, model, state, options, pre, aug, val_ds)
    if t.verbose and setup.chief:
        console.print(_start_line(cfg, dataset, model, state, setup))
    while state.epoch < t.epochs and not state.stopped_early:
        loop.run_epoch()
    if setup.chief:
        _write_history(run_dir, state, setup.replicas, setup.global_batch, len(dataset.train))
        if state.stopped_early and t.verbose:
            console.print(f"early stopping: no better val_accuracy for {t.early_stopping.patience} epochs")
    return _result(run_dir, state, setup.replicas)


@dataclass
class _Setup:
    """How this process trains: the distribution ``strategy`` (None: one device) and its replicas, whether it
    is the chief (the one that writes), the global batch and the base learning rate (scaled by the replicas)."""

    strategy: Any
    replicas: int
    chief: bool
    global_batch: int
    base_lr: float

    @classmethod
    def of(cls, cfg: Config) -> "_Setup":
        import tensorflow as tf

        t = cfg.training
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        strategy = make_strategy(cfg)
        replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        return cls(strategy, replicas, is_chief(cfg), t.batch_size * replicas,
                   t.learning_rate * (replicas if t.scale_learning_rate else 1))


def _model_and_state(cfg: Config, dataset: Dataset, run_dir: Path, state: TrainState | None, setup: _Setup):
    """(model, state): the checkpoint ``state`` names, or a new compiled model and a fresh state."""
    import keras

    from .models import load_keras_model

    keras.utils.set_random_seed(cfg.training.seed)
    scope = setup.strategy.scope() if setup.strategy is not None else _null_scope()
    with scope:
        if state is not None and state.checkpoint:
            model = load_keras_model(rundir.safe_join(run_dir / CHECKPOINTS, state.checkpoint, "checkpoint"),
                                     compile=True)
            _restore_seed_states(model, state.seed_states)
            return model, state
        return _new_model(cfg, len(dataset.class_names), setup.base_lr), TrainState(learning_rate=setup.base_lr)


def _new_model(cfg: Config, num_classes: int, base_lr: float):
    """``cfg.model`` built (from ``training.initial_weights`` when set) and compiled with its optimizer."""
    import keras

    from .models import build_model

    t = cfg.training
    model = build_model(cfg.model.name, cfg.model.input_shape, num_classes, dropout=cfg.model.dropout,
                        batch_norm_momentum=cfg.model.batch_norm_momentum)
    if t.initial_weights:
        _load_initial_weights(model, t.initial_weights)
    opt = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}.get(t.optimizer)
    optimizer = opt(learning_rate=base_lr) if opt else keras.optimizers.SGD(learning_rate=base_lr, momentum=0.9)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    return model


def _result(run_dir: Path, state: TrainState, replicas: int) -> TrainResult:
    return TrainResult(run_dir / rundir.FLOAT_MODEL, state.epoch, state.best_epoch, state.best_val_accuracy,
                       state.seconds, replicas, state.stopped_early)


def _start_line(cfg: Config, dataset: Dataset, model, state: TrainState, setup: _Setup) -> str:
    """What is trained on what, from which epoch, with how many images, classes, parameters and replicas."""
    verb = "resuming" if state.epoch else "training"
    return (
        f"{verb} [bold]{cfg.model.name}[/] {tuple(cfg.model.input_shape)} on {dataset.name}"
        + (f" from epoch {state.epoch + 1}" if state.epoch else "")
        + f": {len(dataset.train)} train / {len(dataset.val)} val images, {len(dataset.class_names)} classes, "
        f"{model.count_params():,} parameters"
        + (f", {setup.replicas} replicas ({cfg.training.distribution}), global batch {setup.global_batch}"
           if setup.strategy is not None else "")
    )


@dataclass
class _EpochLoop:
    """One epoch after another of a training run: fit, check, keep the best model, checkpoint, log."""

    cfg: Config
    dataset: Dataset
    run_dir: Path
    setup: _Setup
    model: Any
    state: TrainState
    options: Any  # tf.data.Options
    pre: Any  # the preprocessing map function
    aug: Any  # the augmentation map function, or None
    val_ds: Any

    def run_epoch(self) -> None:
        """Train epoch ``state.epoch`` (0-based) and record it in the state, the checkpoint and the log."""
        state, model = self.state, self.model
        epoch = state.epoch
        t0 = time.time()
        lr = scheduled_lr(self.cfg, epoch, self.setup.base_lr)
        if lr is not None:
            model.optimizer.learning_rate.assign(lr)
            state.learning_rate = lr
        logs = self._fit(self._train_ds(epoch), epoch)
        row = {
            "epoch": epoch + 1, "loss": logs.get("loss", float("nan")), "accuracy": logs.get("accuracy", float("nan")),
            "val_loss": logs.get("val_loss", float("nan")), "val_accuracy": logs.get("val_accuracy", float("nan")),
            "learning_rate": state.learning_rate, "seconds": round(time.time() - t0, 2),
        }
        if not np.isfinite(row["val_accuracy"]):
            raise McuzooError("training produced no validation accuracy (empty validation split?)")
        bad = [k for k in ("loss", "val_loss", "accuracy") if not np.isfinite(row[k])]
        if bad:  # nothing of this epoch is kept: the last checkpoint stays the one --resume continues from
            raise McuzooError(f"training diverged at epoch {epoch + 1}: {bad[0]} is {row[bad[0]]} "
                              "(lower training.learning_rate, or check preprocessing.rescale and offset)")
        self._record(row, logs)

    def _train_ds(self, epoch: int):
        """The epoch's training batches: shuffled with the epoch's own seed, augmented, preprocessed."""
        import tensorflow as tf

        t = self.cfg.training
        # file-based splits are decoded once and cached in memory where they fit, else streamed
        train_ds = self.dataset.train.tf_dataset(self.setup.global_batch, shuffle=True, seed=t.seed * 1000 + epoch,
                                                 cache=True)
        if self.aug is not None:
            train_ds = train_ds.map(self.aug, num_parallel_calls=tf.data.AUTOTUNE)
        return train_ds.map(self.pre).prefetch(tf.data.AUTOTUNE).with_options(self.options)  # augment while the model steps

    def _fit(self, train_ds, epoch: int) -> dict:
        """Fit one epoch; the epoch's logs (loss, accuracy, val_loss, val_accuracy)."""
        import tensorflow as tf

        t, dataset = self.cfg.training, self.dataset
        if t.distribution == "multi_worker":
            return _distributed_epoch(self.model, self.setup.strategy, train_ds, self.val_ds, self.setup.global_batch)
        steps = max(1, math.ceil(len(dataset.train) / self.setup.global_batch))
        show_bars = t.verbose and console.is_terminal and self.setup.chief
        callbacks = [_progress_callback(t.epochs, steps)] if show_bars else []
        try:
            hist = self.model.fit(train_ds, validation_data=self.val_ds, initial_epoch=epoch, epochs=epoch + 1,
                                  callbacks=callbacks, verbose=0)
        except tf.errors.OpError as e:  # a file whose pixel data lies about its header: name it
            found = next((f for f in (dataset.train.first_undecodable(), dataset.val.first_undecodable()) if f),
                         None)
            if found is None:
                raise
            raise McuzooError(found) from None
        return {k: float(v[-1]) for k, v in hist.history.items()}

    def _record(self, row: dict, logs: dict) -> None:
        """Update the state with the epoch's ``row``; save the best model, the checkpoint, the log."""
        state, model, chief = self.state, self.model, self.setup.chief
        previous_best = state.best_val_accuracy
        new_lr = state.update(logs, self.cfg)
        state.history.append(row)
        state.seconds += row["seconds"]
        if state.best_val_accuracy > previous_best:
            _save_best(_inference_copy(model, self.cfg, len(self.dataset.class_names)), self.run_dir, chief)
        if new_lr is not None:
            model.optimizer.learning_rate.assign(new_lr)
            state.learning_rate = new_lr
        _save_checkpoint(model, self.run_dir, state, chief)
        if chief:
            _write_log(self.run_dir, state)
            if self.cfg.training.verbose:
                console.print(_epoch_line(row, self.cfg.training.epochs))

def _write_history(run_dir: Path, state: TrainState, replicas: int, global_batch: int, n_train: int) -> None:
    """history.json: the per-epoch curves and the summary the card and metrics read."""
    keys = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    rundir.write_json(run_dir / rundir.HISTORY, {
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_accuracy": state.best_val_accuracy,
        "stopped_early": state.stopped_early,
        "replicas": replicas,
        "global_batch_size": global_batch,
        "seconds": round(state.seconds, 2),
        "images_per_second": round(n_train * len(state.history) / max(state.seconds, 1e-9), 1),
        "history": {k: [r[k] for r in state.history] for k in keys},
    })


def _distributed_epoch(model, strategy, train_ds, val_ds, global_batch: int) -> dict:
    """One epoch of a custom synchronous loop under ``strategy`` (multi-worker).

    Keras 3's ``fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras
    #20585: an eager cross-worker reduce of the first batch, then a scalar
    ``reduce(axis=0)`` of the metrics), so multi-worker training runs this loop:
    each replica computes its share of the global batch, the loss is averaged
    over the *global* batch (``tf.nn.compute_average_loss``), and the optimizer
    applies the all-reduced gradients.
    """
    import keras
    import tensorflow as tf

    fns = getattr(model, "_mcuzoo_distributed", None)
    if fns is None:
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
            metrics = {name: keras.metrics.Mean() for name in ("loss", "val_loss")}
            metrics.update({name: keras.metrics.SparseCategoricalAccuracy() for name in ("accuracy", "val_accuracy")})
        xent = keras.losses.SparseCategoricalCrossentropy(reduction=None)

        def train_step(x, y):
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_example = xent(y, probs)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
            metrics["loss"].update_state(per_example)
            metrics["accuracy"].update_state(y, probs)

        def val_step(x, y):
            probs = model(x, training=False)
            metrics["val_loss"].update_state(xent(y, probs))
            metrics["val_accuracy"].update_state(y, probs)

        fns = {
            "train": tf.function(lambda x, y: strategy.run(train_step, args=(x, y))),
            "val": tf.function(lambda x, y: strategy.run(val_step, args=(x, y))),
            "metrics": metrics,
        }
        model._mcuzoo_distributed = fns
    for m in fns["metrics"].values():
        m.reset_state()
    for x, y in strategy.experimental_distribute_dataset(train_ds):
        fns["train"](x, y)
    for x, y in strategy.experimental_distribute_dataset(val_ds):
        fns["val"](x, y)
    return {name: float(m.result()) for name, m in fns["metrics"].items()}


def _inference_copy(model, cfg: Config, num_classes: int):
    """A float32, uncompiled twin of ``model`` with its weights: what ``float_model.keras`` holds.

    Without an optimizer the file is a third of the size (no Adam moments), and under mixed
    precision the twin is float32 for export and int8 conversion. Checkpoints keep the optimizer.
    """
    import keras

    from .models import build_model

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = build_model(cfg.model.name, cfg.model.input_shape, num_classes, dropout=cfg.model.dropout,
                                  batch_norm_momentum=cfg.model.batch_norm_momentum)
        twin.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return twin


def _save_best(model, run_dir: Path, chief: bool) -> None:
    if chief:
        with rundir.atomic_path(run_dir / rundir.FLOAT_MODEL) as tmp:
            model.save(tmp)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="mcuzoo-worker-"))
        model.save(tmp / "best.keras")
        shutil.rmtree(tmp, ignore_errors=True)


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
