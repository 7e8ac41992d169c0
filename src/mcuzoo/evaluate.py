"""Evaluation stage: top-1, per-class accuracy and confusion matrix of a model file.

Entry point: :func:`evaluate_model` (:mod:`mcuzoo.models.scoring`), for .keras, .tflite
and .onnx files, each run by its runtime (:mod:`mcuzoo.models.runner`). The quantization
stage scores its candidates with the same function, upstream of this stage; this module
keeps the evaluate stage's names in one place.
"""
from __future__ import annotations

from .models.runner import MAX_INPUT_ELEMENTS, kernels_of, open_model, runtime
from .models.scoring import EvalResult, PairedDifference, evaluate_model, paired_difference, score
from .rundir import ModelInfo, read_model_info

__all__ = ["evaluate_model", "EvalResult", "score", "open_model", "kernels_of", "runtime", "MAX_INPUT_ELEMENTS",
           "PairedDifference", "paired_difference", "ModelInfo", "read_model_info"]
