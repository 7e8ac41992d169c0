"""Scoring a model file on images: top-1, per-class accuracy, confusion matrix, and paired comparisons.

:func:`evaluate_model` runs a model file (:func:`mcuzoo.models.runner.open_model`) over a
:class:`mcuzoo.data.Split`; the evaluate stage reports it on the test split, the
quantization stage scores its candidates with it on the validation split.
:func:`paired_difference` compares two models' per-image results on the same images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import McuzooError
from .runner import engine_of, kernels_of, open_model, runtime

__all__ = ["EvalResult", "score", "evaluate_model", "PairedDifference", "paired_difference"]


@dataclass
class EvalResult:
    top1: float
    n: int
    per_class: dict[str, float | None]  # None: a class without images in the split
    confusion: list[list[int]] = field(repr=False)
    backend: str = ""
    correct: np.ndarray | None = field(default=None, repr=False, compare=False)  # per image, in split order
    kernels: str = ""  # a .tflite's: exact (TFLM reference kernels), xnnpack, builtin (XNNPACK failed to prepare)
    engine: str = ""  # the exact path's: litert-ref (LiteRT's reference kernels) or tflm (TFLM's interpreter)

    def summary(self) -> dict:
        d = {"top1": round(self.top1, 6), "n": self.n, "backend": self.backend, "runtime": runtime(self.backend)}
        if self.kernels:
            from ..runtime import kernels_label

            d.update(kernels=self.kernels, kernels_label=kernels_label(self.kernels))
            if self.engine:
                d["engine"] = self.engine
        return {**d, "per_class": self.per_class}


def score(
    predict: Callable[[np.ndarray], np.ndarray],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    class_names: list[str],
    correct: list | None = None,
) -> tuple[float, int, dict[str, float | None], list[list[int]]]:
    """(top-1, images, per-class top-1, confusion matrix); ``correct``, if given, gains one bool per image."""
    k = len(class_names)
    conf = np.zeros((k, k), dtype=np.int64)
    for x, y in batches:
        probs = predict(x)
        if probs.ndim != 2 or probs.shape[1] != k:
            raise McuzooError(f"model gives {probs.shape[-1]} outputs but the data has {k} classes")
        y = np.asarray(y, dtype=np.int64)
        pred = probs.argmax(axis=1)
        np.add.at(conf, (y, pred), 1)
        if correct is not None:
            correct.extend((pred == y).tolist())
    n = int(conf.sum())
    if n == 0:
        raise McuzooError("evaluation split is empty")
    totals = conf.sum(axis=1)
    per_class = {name: (round(float(conf[i, i] / totals[i]), 6) if totals[i] else None) for i, name in enumerate(class_names)}
    return float(np.trace(conf) / n), n, per_class, conf.tolist()


def evaluate_model(
    model_path: str | Path,
    split,
    class_names: list[str],
    rescale: float | None,
    offset: float,
    batch_size: int = 256,
    runtime: str = "exact",
    workers: int | None = None,
) -> EvalResult:
    """Evaluate a .keras / .tflite / .onnx model on a :class:`mcuzoo.data.Split`.

    A .tflite runs on MCU-exact kernels unless ``runtime="xnnpack"``; the result's ``kernels`` says which ran.
    """
    backend, shape, predict = open_model(model_path, rescale, offset, batch_size, runtime, workers)
    if tuple(split.image_shape) != tuple(shape):
        raise McuzooError(f"model input is {shape} but the data gives {tuple(split.image_shape)}")
    correct: list[bool] = []
    try:
        top1, n, per_class, conf = score(predict, split.numpy_batches(batch_size), class_names, correct)
    finally:
        runner = getattr(predict, "runner", None)
        if runner is not None:
            runner.close()
    return EvalResult(top1, n, per_class, conf, backend, np.asarray(correct, dtype=bool), kernels_of(predict),
                      engine_of(predict))


@dataclass
class PairedDifference:
    """Top-1 of model B minus model A on the same images, with its standard error.

    Only the images on which exactly one model is right move the difference:
    ``b_only`` (B right, A wrong) and ``a_only``. The standard error is that of
    the mean of the per-image differences (each -1, 0 or +1), so that
    ``diff +- 1.96 se`` is the usual 95 % interval of a paired comparison.
    """

    n: int
    a_only: int
    b_only: int

    @property
    def diff(self) -> float:
        return (self.b_only - self.a_only) / self.n if self.n else 0.0

    @property
    def se(self) -> float:
        if self.n < 2:
            return 0.0
        mean = self.diff
        var = ((self.a_only + self.b_only) / self.n - mean * mean) * self.n / (self.n - 1)
        return math.sqrt(max(var, 0.0) / self.n)

    def to_json(self) -> dict:
        return {"n": self.n, "a_only": self.a_only, "b_only": self.b_only,
                "diff": round(self.diff, 6), "se": round(self.se, 6)}


def paired_difference(correct_a, correct_b) -> PairedDifference:
    """Compare per-image correctness of two models on the same images (see :class:`PairedDifference`)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise McuzooError(f"paired comparison needs per-image results of the same images, got {a.shape} and {b.shape}")
    return PairedDifference(int(a.size), int((a & ~b).sum()), int((b & ~a).sum()))
