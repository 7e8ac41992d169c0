"""Quantization-aware fine-tuning by distillation: teach the float weights to survive int8.

Entry point: :func:`finetune_qat`. Post-training int8 adds rounding noise at
every activation tensor; a model that is sensitive to it (a small one trained on
little data, whose images sit close to its decision boundaries) loses points that
no choice of calibration brings back. This stage fine-tunes a copy of the float
model so that its *int8* outputs agree with the original float model:

1. **Fake quantization where the .tflite quantizes.** The copy's graph is rebuilt
   with a per-tensor 8-bit fake-quant (straight-through gradient) after every
   tensor that the int8 .tflite stores: each layer's output, except a convolution
   or dense output that the converter fuses into the batch normalisation or ReLU
   that alone reads it, a batch normalisation fused into its ReLU, dropout (gone
   at inference) and the model's output (float32 in the .tflite). Weights are not
   fake-quantized: per-channel int8 weights add little noise next to per-tensor
   activations.
2. **The converter's ranges.** Each fake-quant range is the min / max of that
   tensor in the float copy over the calibration images (0 included), exactly
   what the TFLite converter calibrates, recomputed before every epoch since the
   weights move.
3. **Distillation.** The loss is the KL divergence from the original float
   model's class probabilities to the fake-quantized copy's, on augmented
   training images (the run's ``augmentation``): the target is the float model's
   behaviour, not the labels, so the copy does not drift into another model.
   Batch normalisation statistics stay frozen (the converter folds them).
4. **Chosen on validation.** After every epoch the copy is converted to int8
   (:func:`mcuzoo.quantize.quantize_tflite`, the same calibration images) and
   compared with the float model on the **validation** split, image by image
   (:func:`mcuzoo.evaluate.paired_difference`). The epoch whose int8 model loses
   least against the float model wins; epoch 0, the plain post-training int8
   model, is a candidate too, so fine-tuning is kept only when validation says it
   helps. The test split takes no part.

The result is ``float_model_qat.keras``: the same architecture and layers as
``float_model.keras`` with fine-tuned weights, from which the quantize stage
makes ``model_int8.tflite``. ``float_model.keras`` stays the reference that the
int8 model is compared with.
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import rundir
from .console import console, step_bar
from .errors import McuzooError

QAT_MODEL = "float_model_qat.keras"


def int8_source(run_dir: str | Path) -> Path:
    """The Keras model a run's int8 models are made from: ``float_model_qat.keras`` where the quantize stage kept
    one, else ``float_model.keras``."""
    qat = Path(run_dir) / QAT_MODEL
    return qat if qat.is_file() else Path(run_dir) / rundir.FLOAT_MODEL


@dataclass
class QatResult:
    path: Path | None            # float_model_qat.keras, or None when plain post-training int8 won
    epoch: int                   # the chosen epoch (0: no fine-tuning kept)
    epochs: int
    learning_rate: float
    val_n: int
    val_drop: float              # validation top-1 of the float model minus the chosen int8 model's
    val_drop_ptq: float          # the same for plain post-training int8
    fake_quant_points: int
    seconds: float
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        d = asdict(self)
        d["file"] = self.path.name if self.path is not None else None
        d.pop("path")
        for k in ("val_drop", "val_drop_ptq", "learning_rate"):
            d[k] = round(d[k], 6)
        d["seconds"] = round(self.seconds, 1)
        return d


# ---------------------------------------------------------------------------
# the fake-quantized graph


def _fake_quant_layer():
    import keras

    class FakeQuant(keras.layers.Layer):
        """Per-tensor 8-bit fake quantization over a fixed [lo, hi] (set from calibration, not trained)."""

        def build(self, input_shape):
            self.lo = self.add_weight(shape=(), initializer="zeros", trainable=False, name="lo")
            self.hi = self.add_weight(shape=(), initializer="ones", trainable=False, name="hi")

        def call(self, x):
            return keras.quantizers.fake_quant_with_min_max_vars(x, self.lo, self.hi, num_bits=8)

    return FakeQuant


def _consumers(model) -> dict[int, list]:
    out: dict[int, list] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for t in node.input_tensors:
                out.setdefault(id(t), []).append(layer)
    return out


def _fused(layer, users: list, is_output: bool) -> bool:
    """True when the int8 .tflite stores no tensor of its own for this layer's output."""
    from keras import layers

    if is_output or isinstance(layer, layers.Dropout):
        return True
    only = users[0] if len(users) == 1 else None
    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
        return isinstance(only, (layers.BatchNormalization, layers.ReLU))
    if isinstance(layer, layers.BatchNormalization):
        return isinstance(only, layers.ReLU)
    return False


def fake_quant_graph(model):
    """(fake-quantized model sharing ``model``'s layers, float model of the quantized tensors, fake-quant layers)."""
    import keras
    from keras import layers

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise McuzooError("quantization-aware fine-tuning needs a model with one input and one output")
    FakeQuant = _fake_quant_layer()
    users = _consumers(model)
    inp = model.inputs[0]
    new_in = keras.Input(shape=inp.shape[1:], name="qat_input")
    tensors = {id(inp): new_in}
    tapped: list = []
    fqs: list = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            raise McuzooError(f"quantization-aware fine-tuning: layer {layer.name!r} is used more than once")
        node = layer._inbound_nodes[0]
        if len(node.output_tensors) != 1:
            raise McuzooError(f"quantization-aware fine-tuning: layer {layer.name!r} has several outputs")
        args = [tensors[id(t)] for t in node.input_tensors]
        out = node.output_tensors[0]
        if isinstance(layer, layers.Dropout):  # identity at inference: keep the student deterministic
            tensors[id(out)] = args[0]
            continue
        y = layer(args if len(args) > 1 else args[0])
        if not _fused(layer, users.get(id(out), []), out is model.outputs[0]):
            tapped.append(out)
            fq = FakeQuant(name=f"{layer.name}_fakequant")
            y = fq(y)
            fqs.append(fq)
        tensors[id(out)] = y
    qmodel = keras.Model(new_in, tensors[id(model.outputs[0])], name=f"{model.name}_qat")
    taps = keras.Model(model.inputs, tapped, name=f"{model.name}_taps")
    return qmodel, taps, fqs


def _set_ranges(taps, fqs, images: np.ndarray, rescale: float, offset: float, batch: int = 64) -> None:
    """Each fake-quant range = min / max of its float tensor over the calibration images (0 included)."""
    lo = np.zeros(len(fqs))
    hi = np.zeros(len(fqs))
    for i in range(0, len(images), batch):
        x = images[i:i + batch].astype(np.float32) * rescale + offset
        outs = taps(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for j, o in enumerate(outs):
            o = np.asarray(o)
            lo[j] = min(lo[j], float(o.min()))
            hi[j] = max(hi[j], float(o.max()))
    for j, fq in enumerate(fqs):
        fq.lo.assign(lo[j])
        fq.hi.assign(max(hi[j], lo[j] + 1e-6))


# ---------------------------------------------------------------------------
# entry point


def finetune_qat(
    float_path: str | Path,
    dataset,
    out_dir: str | Path,
    calibration_images: np.ndarray,
    rescale: float,
    offset: float,
    epochs: int,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    augmentation=None,
    seed: int = 0,
    per_channel: bool = True,
    verbose: bool = True,
) -> QatResult:
    """Fine-tune a copy of ``float_path`` so that its int8 model agrees with it; see the module docstring.

    Writes ``out_dir/float_model_qat.keras`` when a fine-tuned epoch beats plain
    post-training int8 on ``dataset.val`` (else removes a stale one). Reads
    ``dataset.train`` and ``dataset.val`` only.
    """
    import keras
    import tensorflow as tf

    from .data import augment_fn
    from .evaluate import evaluate_model, paired_difference
    from .quantize import load_keras_model, quantize_tflite

    if not (isinstance(epochs, int) and epochs >= 1):
        raise McuzooError(f"quantization-aware fine-tuning needs at least 1 epoch, got {epochs!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise McuzooError(f"quantization-aware fine-tuning: learning rate must be positive, got {learning_rate!r}")
    if len(calibration_images) == 0:
        raise McuzooError("calibration set is empty: quantization needs training images")
    if dataset.val is None or len(dataset.val) == 0:
        raise McuzooError("quantization-aware fine-tuning chooses its epoch on the validation split, which is empty")
    t0 = time.time()
    out_dir = Path(out_dir)
    names = list(dataset.class_names)
    keras.utils.set_random_seed(seed)
    teacher = load_keras_model(float_path)
    student = load_keras_model(float_path)
    for layer in student.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # inference mode: the converter folds the moving statistics
    qmodel, taps, fqs = fake_quant_graph(student)
    qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.KLDivergence())
    aug = augment_fn(augmentation, seed) if augmentation is not None else None

    def val_correct(path: Path) -> np.ndarray:
        return evaluate_model(path, dataset.val, names, rescale, offset, 256).correct

    reference = val_correct(Path(float_path))
    history: list[dict] = []
    best = {"epoch": 0, "key": None}
    with tempfile.TemporaryDirectory(prefix="mcuzoo_qat_") as tmpd:
        tmp = Path(tmpd)

        def score_epoch(epoch: int, keras_path: Path, loss: float | None) -> None:
            tfl = quantize_tflite(keras_path, calibration_images, tmp / f"epoch{epoch}.tflite", rescale, offset,
                                  per_channel=per_channel)
            d = paired_difference(val_correct(tfl.path), reference)
            drop = d.diff  # top-1 of the float model minus the int8 model's: what int8 loses
            row = {"epoch": epoch, "kl": None if loss is None else round(loss, 6), "val_drop": round(drop, 6),
                   "val_drop_se": round(d.se, 6), "val_only_float_right": d.b_only, "val_only_int8_right": d.a_only}
            history.append(row)
            key = (round(drop, 9), d.a_only + d.b_only)  # least loss, then fewest changed predictions
            if best["key"] is None or key < best["key"]:
                best.update(epoch=epoch, key=key, drop=drop)
                if epoch > 0:
                    student.save(tmp / "best.keras")
            if verbose:
                what = "post-training" if epoch == 0 else f"QAT epoch {epoch}/{epochs} (KL {loss:.5f}):"
                console.print(f"{what} int8 vs float on validation: {0.0 - 100 * drop:+.2f} points "
                              f"({d.b_only} only float right / {d.a_only} only int8 right)")

        score_epoch(0, Path(float_path), None)
        steps = max(1, math.ceil(len(dataset.train) / batch_size))
        for epoch in range(1, epochs + 1):
            _set_ranges(taps, fqs, calibration_images, rescale, offset)
            ds = dataset.train.tf_dataset(batch_size, shuffle=True, seed=seed * 1000 + 500 + epoch, cache=True)
            if aug is not None:
                ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
            losses = []
            bar = step_bar(f"QAT epoch {epoch}/{epochs}", steps) if verbose and console.is_terminal else None
            for step, (x, _) in enumerate(ds):
                x = tf.cast(x, tf.float32) * rescale + offset
                losses.append(float(qmodel.train_on_batch(x, teacher(x, training=False))))
                if bar is not None:
                    bar[0].update(bar[1], completed=step + 1, info=f"KL {np.mean(losses):.5f}")
                if step + 1 >= steps:
                    break
            if bar is not None:
                bar[0].stop()
            student.save(tmp / "epoch.keras")
            score_epoch(epoch, tmp / "epoch.keras", float(np.mean(losses)))
        final = out_dir / QAT_MODEL
        if best["epoch"] > 0:
            with rundir.atomic_path(final) as t:
                t.write_bytes((tmp / "best.keras").read_bytes())
            path = final
        else:
            final.unlink(missing_ok=True)
            path = None
    return QatResult(
        path=path, epoch=best["epoch"], epochs=epochs, learning_rate=float(learning_rate), val_n=len(reference),
        val_drop=float(best["drop"]), val_drop_ptq=float(history[0]["val_drop"]), fake_quant_points=len(fqs),
        seconds=time.time() - t0, history=history,
    )
