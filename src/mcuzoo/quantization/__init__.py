"""The quantization stage: a run's float model to int8 models.

Entry point: :func:`run_stage` (``mcuzoo run``'s quantize stage); the
``mcuzoo quantize`` verb is in :mod:`.cli`. The stage draws its calibration set
once (:mod:`.calibration`) and hands it to every method. One module per method:

- :mod:`.tflite`: post-training int8 .tflite (uint8 raw-pixel input), as on the model cards;
- :mod:`.qat`: quantization-aware fine-tuning of a copy of the float model;
- :mod:`.onnx_qdq`: ONNX QDQ int8 (onnxruntime's static quantization);
- :mod:`.mixed`: mixed int4/int8-weight ONNX QDQ within a tolerance of int8;
- :mod:`.report`: the per-layer float-vs-int8 error report.
"""
from __future__ import annotations

from .stage import run_stage

__all__ = ["run_stage"]
