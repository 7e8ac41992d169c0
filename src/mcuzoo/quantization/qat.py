"""Quantization-aware fine-tuning by distillation: teach the float weights to survive int8.

Entry point: :func:`finetune_qat`. Post-training int8 adds rounding noise at
every activation tensor; a model that is sensitive to it (a small one trained on
little data, whose images sit close to its decision boundaries) loses points that
no choice of calibration brings back. This stage fine-tunes a copy of the float
model so that its *int8* outputs agree with the original float model:

1. **Fake quantization where the .tflite quantizes.** The copy's graph is rebuilt
   the way the int8 .tflite computes it (straight-through gradients): int8
   weights, symmetric, per channel or per tensor as configured, with the batch
   normalisation that reads a convolution folded in first as the converter does;
   a per-tensor 8-bit fake-quant after every tensor that the .tflite stores (each
   layer's output, except a convolution or dense output that the converter fuses
   into the batch normalisation or ReLU that alone reads it, a batch normalisation
   fused into its ReLU, and dropout, gone at inference); sigmoid outputs on
   TFLite's fixed range; and the softmax head as TFLite's: int8 logits, then
   probabilities in steps of 1/256 before the float32 output. On the zoo's
   EfficientNet LC the simulated model's KL divergence from the float model is
   within 10 % of the real .tflite's (without weights and head it was 40 %).
2. **The converter's ranges.** Each calibrated range is the min / max of that
   tensor in the float copy over the calibration images (0 included; the images
   as drawn, :attr:`~.calibration.Calibration.drawn`), what the TFLite converter
   calibrates, recomputed before every epoch since the weights move.
3. **Distillation.** The loss is the KL divergence from the original float
   model's class probabilities to the fake-quantized copy's, on augmented
   training images (the run's ``augmentation``): the target is the float model's
   behaviour, not the labels, so the copy does not drift into another model.
   Batch normalisation statistics stay frozen (the converter folds them).
4. **Chosen on validation.** After every epoch the copy is converted to int8
   (:func:`mcuzoo.quantization.tflite.quantize_tflite`, the same calibration images) and its
   outputs compared with the float model's on the **validation** split. The epoch
   whose int8 model is nearest the float model (least mean KL divergence) wins;
   epoch 0, the plain post-training int8 model, is a candidate too, so fine-tuning
   is kept only when validation says it helps. Top-1 differences (paired, image by
   image: :func:`mcuzoo.models.scoring.paired_difference`) are recorded but do not
   choose: on a few hundred images they move by a point from epoch to epoch with
   no trend, and the smallest of several such numbers is mostly luck. The test
   split takes no part.

The result is ``float_model_qat.keras``: the same architecture and layers as
``float_model.keras`` with fine-tuned weights, from which the quantize stage
makes ``model_int8.tflite``. ``float_model.keras`` stays the reference that the
int8 model is compared with.
"""
from __future__ import annotations

import math
import tempfile
import time
from typing import Any
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import rundir
from ..console import console, step_bar
from ..errors import McuzooError
from .calibration import Calibration

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
    val_kl: float                # validation: mean KL divergence of the chosen int8 model's outputs from the float model's
    val_kl_ptq: float            # the same for plain post-training int8
    val_drop: float              # validation top-1 of the float model minus the chosen int8 model's
    val_drop_ptq: float          # the same for plain post-training int8
    fake_quant_points: int
    seconds: float
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        d = asdict(self)
        d["file"] = self.path.name if self.path is not None else None
        d.pop("path")
        for k in ("val_kl", "val_kl_ptq", "val_drop", "val_drop_ptq", "learning_rate"):
            d[k] = round(d[k], 6)
        d["seconds"] = round(self.seconds, 1)
        return d


# ---------------------------------------------------------------------------
# the fake-quantized graph


SOFTMAX_RANGE = (0.0, 255.0 / 256.0)  # TFLite's int8 softmax / logistic output: scale 1/256, zero point -128


def _fake_quant_layers():
    """The two Keras layers of the fake-quantized graph: (``FakeQuant``, ``QuantWeights``)."""
    return _fake_quant_class(), _quant_weights_class()


def _fake_quant_class():
    import keras

    class FakeQuant(keras.layers.Layer):
        """Per-tensor 8-bit fake quantization over [lo, hi]: calibrated (set before each epoch) or ``fixed``."""

        def __init__(self, fixed: tuple[float, float] | None = None, **kw):
            super().__init__(**kw)
            self.fixed = fixed

        def build(self, input_shape):
            lo, hi = self.fixed if self.fixed is not None else (0.0, 1.0)
            self.lo = self.add_weight(shape=(), initializer=keras.initializers.Constant(lo), trainable=False, name="lo")
            self.hi = self.add_weight(shape=(), initializer=keras.initializers.Constant(hi), trainable=False, name="hi")

        def call(self, x):
            return keras.quantizers.fake_quant_with_min_max_vars(x, self.lo, self.hi, num_bits=8)

    return FakeQuant


def _quant_weights_class():
    import keras
    from keras import ops

    class QuantWeights(keras.layers.Layer):
        """Calls a Conv2D / DepthwiseConv2D / Dense with symmetric int8 weights (straight-through gradient), as the
        converter stores them: per output channel or per tensor, after folding the batch normalisation ``bn`` that
        alone reads the layer's output. ``linear`` leaves out the layer's own activation. The layer's variables are
        the ones trained."""

        def __init__(self, layer, bn=None, per_channel: bool = True, linear: bool = False, quantize: bool = True, **kw):
            super().__init__(**kw)
            self.inner, self.bn, self.per_channel, self.linear, self.quantize = layer, bn, per_channel, linear, quantize

        def _fold(self):
            bn = self.bn
            if bn is None:
                return None
            k = ops.rsqrt(bn.moving_variance + bn.epsilon)
            if bn.gamma is not None:
                k = k * bn.gamma
            return ops.where(ops.abs(k) < 1e-12, ops.ones_like(k), k)

        def _kernel(self):
            layer = self.inner
            w = layer.kernel
            if not self.quantize:
                return w
            k = self._fold()
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            if k is not None and depthwise:
                k = ops.reshape(k, (w.shape[2], w.shape[3]))
            wk = w if k is None else w * k
            axes = (0, 1) if depthwise else tuple(range(len(w.shape) - 1))
            amax = ops.max(ops.abs(wk), axis=axes, keepdims=True) if self.per_channel else ops.max(ops.abs(wk))
            scale = ops.maximum(amax, 1e-12) / 127.0
            wq = ops.clip(ops.round(wk / scale), -127.0, 127.0) * scale
            if k is not None:
                wq = wq / k
            return w + ops.stop_gradient(wq - w)

        def call(self, x):
            layer = self.inner
            w = self._kernel()
            if isinstance(layer, keras.layers.Dense):
                y = ops.matmul(x, w)
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                y = ops.depthwise_conv(x, w, strides=layer.strides, padding=layer.padding,
                                       data_format=layer.data_format, dilation_rate=layer.dilation_rate)
            else:
                y = ops.conv(x, w, strides=layer.strides, padding=layer.padding, data_format=layer.data_format,
                             dilation_rate=layer.dilation_rate)
            if layer.use_bias:
                y = y + layer.bias
            return y if self.linear else layer.activation(y)

    return QuantWeights


def _model_nodes(model, layer) -> list:
    """The calls of ``layer`` that are part of ``model``'s graph. A layer keeps every call in its inbound
    nodes, including the calls that built an earlier fake-quantized copy of the model; Keras names the
    model's own ones ``<id>_ib-<index>``."""
    own = getattr(model, "_nodes", None)
    nodes = layer._inbound_nodes
    if own is None:
        return list(nodes)
    return [n for i, n in enumerate(nodes) if f"{id(layer)}_ib-{i}" in own]


def _consumers(model) -> dict[int, list]:
    out: dict[int, list] = {}
    for layer in model.layers:
        for node in _model_nodes(model, layer):
            for t in node.input_tensors:
                out.setdefault(id(t), []).append(layer)
    return out


def _weighted(layer) -> bool:
    """A layer whose weights the .tflite stores in int8 (Conv2D, DepthwiseConv2D, Dense)."""
    from keras import layers

    return isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense))


def _fused(layer, users: list) -> bool:
    """True when the int8 .tflite stores no tensor of its own for this layer's output."""
    from keras import layers

    if isinstance(layer, layers.Dropout):
        return True
    only = users[0] if len(users) == 1 else None
    if _weighted(layer):
        return isinstance(only, (layers.BatchNormalization, layers.ReLU))
    if isinstance(layer, layers.BatchNormalization):
        return isinstance(only, layers.ReLU)
    return False


def _one(args: list):
    """A layer's call argument: the tensor itself, or the list for a layer of several inputs (Add, Multiply)."""
    return args if len(args) > 1 else args[0]


def _activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def _only_call(model, layer):
    """The one call of ``layer`` in ``model`` (one output); a graph the fine-tuning cannot follow is an error."""
    from keras import layers

    nodes = _model_nodes(model, layer)
    if len(nodes) != 1:
        raise McuzooError(f"quantization-aware fine-tuning: layer {layer.name!r} is used more than once")
    node = nodes[0]
    if len(node.output_tensors) != 1:
        raise McuzooError(f"quantization-aware fine-tuning: layer {layer.name!r} has several outputs")
    if isinstance(layer, layers.Conv2D) and getattr(layer, "groups", 1) != 1:
        raise McuzooError(f"quantization-aware fine-tuning: grouped convolution {layer.name!r} is not supported")
    return node


class _Rebuild:
    """The two copies of a model being built layer by layer: ``q``, the fake-quantized one, and ``f``, the float
    one (Keras tensor id -> the copy's tensor), with the calibrated fake-quants (``fqs``) and the float tensors
    that set their ranges (``tapped``), in the same order."""

    def __init__(self, model, new_in, per_channel: bool):
        self.model, self.per_channel = model, per_channel
        self.FakeQuant, self.QuantWeights = _fake_quant_layers()
        self.users = _consumers(model)
        inp = model.inputs[0]
        self.q = {id(inp): new_in}
        self.f = {id(inp): new_in}
        self.tapped: list = []
        self.fqs: list = []

    def calibrated(self, name: str, y, float_out):
        """``y`` through a fake-quant whose range is the one ``float_out`` takes over the calibration images."""
        self.tapped.append(float_out)
        fq = self.FakeQuant(name=name)
        self.fqs.append(fq)
        return fq(y)

    def fixed(self, name: str, y):
        """``y`` through a fake-quant on TFLite's fixed softmax / logistic output range."""
        return self.FakeQuant(fixed=SOFTMAX_RANGE, name=name)(y)

    def layer(self, layer) -> None:
        """Add ``layer``'s call to both copies."""
        from keras import layers

        node = _only_call(self.model, layer)
        out = node.output_tensors[0]
        qargs = [self.q[id(t)] for t in node.input_tensors]
        fargs = [self.f[id(t)] for t in node.input_tensors]
        if isinstance(layer, layers.Dropout):  # identity at inference: keep the student deterministic
            self.q[id(out)], self.f[id(out)] = qargs[0], fargs[0]
            return
        consumers = self.users.get(id(out), [])
        is_output = out is self.model.outputs[0]
        self.f[id(out)] = layer(_one(fargs))
        if _weighted(layer) and is_output and _activation_name(layer) == "softmax":
            self.q[id(out)] = self.softmax_head(layer, qargs[0], fargs[0])
            return
        if _weighted(layer):
            only = consumers[0] if len(consumers) == 1 else None
            bn = only if isinstance(only, layers.BatchNormalization) else None
            y = self.QuantWeights(layer, bn=bn, per_channel=self.per_channel, name=f"{layer.name}_int8w")(qargs[0])
        else:
            y = layer(_one(qargs))
        self.q[id(out)] = self.stored(layer, y, self.f[id(out)], is_output, consumers)

    def softmax_head(self, layer, qx, fx):
        """A Dense/Conv softmax output as TFLite's int8 model: int8 logits (a tensor of their own), then the int8
        softmax, probabilities in steps of 1/256."""
        from keras import layers

        logits = self.QuantWeights(layer, per_channel=self.per_channel, linear=True, name=f"{layer.name}_int8w")(qx)
        float_logits = self.QuantWeights(layer, linear=True, quantize=False, name=f"{layer.name}_float_logits")(fx)
        probs = layers.Softmax(name=f"{layer.name}_softmax")(
            self.calibrated(f"{layer.name}_logits_fakequant", logits, float_logits))
        return self.fixed(f"{layer.name}_fakequant", probs)

    def stored(self, layer, y, float_out, is_output: bool, consumers: list):
        """``y`` as the .tflite stores the layer's output: the softmax output on its fixed range, a tensor fused
        into the next op as is, a sigmoid on its fixed range, any other on its calibrated range."""
        from keras import layers

        if is_output and (isinstance(layer, layers.Softmax) or _activation_name(layer) == "softmax"):
            return self.fixed(f"{layer.name}_fakequant", y)  # int8 softmax, then float32
        if is_output or _fused(layer, consumers):
            return y
        if isinstance(layer, layers.Activation) and _activation_name(layer) == "sigmoid":
            return self.fixed(f"{layer.name}_fakequant", y)
        return self.calibrated(f"{layer.name}_fakequant", y, float_out)


def fake_quant_graph(model, per_channel: bool = True):
    """(fake-quantized model sharing ``model``'s weights, float model of the calibrated tensors, their fake-quants).

    The fake-quantized model is ``model`` as the int8 .tflite computes it: int8 weights (per channel or per tensor,
    batch normalisation folded first), an 8-bit fake quantization after every tensor the .tflite stores, and a
    softmax output head that quantizes the logits and then the probabilities (scale 1/256), as TFLite's int8
    softmax does before the float32 output. Sigmoid outputs have TFLite's fixed range too. The second model gives
    the float tensors whose min / max set the calibrated ranges (:func:`_set_ranges`).
    """
    import keras
    from keras import layers

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise McuzooError("quantization-aware fine-tuning needs a model with one input and one output")
    new_in = keras.Input(shape=model.inputs[0].shape[1:], name="qat_input")
    rebuild = _Rebuild(model, new_in, per_channel)
    for layer in model.layers:
        if not isinstance(layer, layers.InputLayer):
            rebuild.layer(layer)
    qmodel = keras.Model(new_in, rebuild.q[id(model.outputs[0])], name=f"{model.name}_qat")
    taps = keras.Model(new_in, rebuild.tapped, name=f"{model.name}_taps")
    return qmodel, taps, rebuild.fqs


def _set_ranges(taps, fqs, calibration: Calibration, batch: int = 64) -> None:
    """Each calibrated fake-quant range = min / max of its float tensor over the drawn calibration images
    (0 included)."""
    lo = np.zeros(len(fqs))
    hi = np.zeros(len(fqs))
    for x in calibration.drawn_batches(batch):
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


def _check_qat_args(epochs, learning_rate, dataset) -> None:
    if not (isinstance(epochs, int) and epochs >= 1):
        raise McuzooError(f"quantization-aware fine-tuning needs at least 1 epoch, got {epochs!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise McuzooError(f"quantization-aware fine-tuning: learning rate must be positive, got {learning_rate!r}")
    if dataset.val is None or len(dataset.val) == 0:
        raise McuzooError("quantization-aware fine-tuning chooses its epoch on the validation split, which is empty")


class _EpochScores:
    """Each epoch's int8 model scored against the float model on the validation split; the best one kept.

    The int8 model nearest the float model's outputs (least mean KL divergence) is the best; a fine-tuned
    best epoch's weights are saved to ``tmp/best.keras``.
    """

    def __init__(self, float_path: Path, dataset, calibration: Calibration, tmp: Path, per_channel: bool,
                 runtime: str, epochs: int, verbose: bool):
        self.dataset, self.calibration, self.tmp = dataset, calibration, tmp
        self.per_channel, self.runtime, self.epochs, self.verbose = per_channel, runtime, epochs, verbose
        self.ref_probs, self.labels = self.val_probs(float_path)
        self.reference = self.ref_probs.argmax(axis=1) == self.labels
        self.history: list[dict] = []
        self.best: dict[str, Any] = {"epoch": 0, "key": None}

    def val_probs(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        from ..models.runner import open_model

        predict = open_model(path, self.calibration.rescale, self.calibration.offset, 256, self.runtime)[2]
        out, ys = [], []
        for x, y in self.dataset.val.numpy_batches(256):
            out.append(predict(x))
            ys.append(y)
        return np.concatenate(out).astype(np.float64), np.concatenate(ys)

    def score(self, epoch: int, keras_path: Path, loss: float | None, student) -> None:
        """Quantize ``keras_path`` to int8, score it, and save ``student`` when it is the best so far."""
        from ..models.scoring import paired_difference
        from .tflite import quantize_tflite

        tfl = quantize_tflite(keras_path, self.calibration, self.tmp / f"epoch{epoch}.tflite",
                              per_channel=self.per_channel)
        probs = self.val_probs(tfl.path)[0]
        ref = self.ref_probs
        kl = float(np.mean(np.sum(ref * (np.log(ref + 1e-12) - np.log(probs + 1e-12)), axis=1)))
        d = paired_difference(probs.argmax(axis=1) == self.labels, self.reference)
        drop = d.diff  # top-1 of the float model minus the int8 model's: what int8 loses
        self.history.append({"epoch": epoch, "kl": None if loss is None else round(loss, 6), "val_kl": round(kl, 6),
                             "val_drop": round(drop, 6), "val_drop_se": round(d.se, 6),
                             "val_only_float_right": d.b_only, "val_only_int8_right": d.a_only})
        if self.best["key"] is None or kl < self.best["key"]:  # the int8 model nearest the float model's outputs
            self.best.update(epoch=epoch, key=kl, drop=drop)
            if epoch > 0:
                student.save(self.tmp / "best.keras")
        if self.verbose:
            what = "post-training" if epoch == 0 else f"QAT epoch {epoch}/{self.epochs} (KL {loss:.5f}):"
            console.print(f"{what} int8 vs float on validation: KL {kl:.5f}, {0.0 - 100 * drop:+.2f} points "
                          f"({d.b_only} only float right / {d.a_only} only int8 right)")


def _train_epoch(qmodel, teacher, dataset, calibration: Calibration, aug, epoch: int, epochs: int,
                 batch_size: int, seed: int, verbose: bool) -> float:
    """One epoch of distillation on augmented training images; the mean KL divergence."""
    import tensorflow as tf

    steps = max(1, math.ceil(len(dataset.train) / batch_size))
    ds = dataset.train.tf_dataset(batch_size, shuffle=True, seed=seed * 1000 + 500 + epoch, cache=True)
    if aug is not None:
        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    losses = []
    bar = step_bar(f"QAT epoch {epoch}/{epochs}", steps) if verbose and console.is_terminal else None
    for step, (x, _) in enumerate(ds):
        x = calibration.model_input(x)
        losses.append(float(qmodel.train_on_batch(x, teacher(x, training=False))))
        if bar is not None:
            bar[0].update(bar[1], completed=step + 1, info=f"KL {np.mean(losses):.5f}")
        if step + 1 >= steps:
            break
    if bar is not None:
        bar[0].stop()
    return float(np.mean(losses))


def _keep_best(scores: _EpochScores, out_dir: Path) -> Path | None:
    """``out_dir/float_model_qat.keras`` when a fine-tuned epoch won (else a stale one is removed)."""
    final = out_dir / QAT_MODEL
    if scores.best["epoch"] > 0:
        with rundir.atomic_path(final) as t:
            t.write_bytes((scores.tmp / "best.keras").read_bytes())
        return final
    final.unlink(missing_ok=True)
    return None


def finetune_qat(
    float_path: str | Path,
    dataset,
    out_dir: str | Path,
    calibration: Calibration,
    epochs: int,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    augmentation=None,
    seed: int = 0,
    per_channel: bool = True,
    verbose: bool = True,
    runtime: str = "exact",
) -> QatResult:
    """Fine-tune a copy of ``float_path`` so that its int8 model agrees with it; see the module docstring.

    Each epoch's int8 .tflite (calibrated on ``calibration``, as the quantize stage's) is scored on ``runtime``'s
    kernels: MCU-exact (TFLM reference kernels) by default.

    Writes ``out_dir/float_model_qat.keras`` when a fine-tuned epoch beats plain
    post-training int8 on ``dataset.val`` (else removes a stale one). Reads
    ``dataset.train`` and ``dataset.val`` only.
    """
    import keras

    from ..data import augment_fn
    from ..models import load_keras_model

    _check_qat_args(epochs, learning_rate, dataset)
    t0 = time.time()
    keras.utils.set_random_seed(seed)
    teacher = load_keras_model(float_path)
    student = load_keras_model(float_path)
    for layer in student.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # inference mode: the converter folds the moving statistics
    qmodel, taps, fqs = fake_quant_graph(student, per_channel=per_channel)
    qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.KLDivergence())
    aug = augment_fn(augmentation, seed) if augmentation is not None else None
    with tempfile.TemporaryDirectory(prefix="mcuzoo_qat_") as tmpd:
        tmp = Path(tmpd)
        scores = _EpochScores(Path(float_path), dataset, calibration, tmp, per_channel, runtime, epochs, verbose)
        scores.score(0, Path(float_path), None, student)
        for epoch in range(1, epochs + 1):
            _set_ranges(taps, fqs, calibration)
            loss = _train_epoch(qmodel, teacher, dataset, calibration, aug, epoch, epochs, batch_size, seed, verbose)
            student.save(tmp / "epoch.keras")
            scores.score(epoch, tmp / "epoch.keras", loss, student)
        path = _keep_best(scores, Path(out_dir))
    best, history = scores.best, scores.history
    return QatResult(
        path=path, epoch=best["epoch"], epochs=epochs, learning_rate=float(learning_rate),
        val_n=len(scores.reference), val_kl=float(best["key"]), val_kl_ptq=float(history[0]["val_kl"]),
        val_drop=float(best["drop"]), val_drop_ptq=float(history[0]["val_drop"]), fake_quant_points=len(fqs),
        seconds=time.time() - t0, history=history,
    )
