"""The calibration set: training images drawn once, as every quantization method sees them.

Entry points: :func:`draw_calibration` (``cfg.quantization.calibration_samples``
training images, drawn with the dataset's seed; the stage entry
:func:`mcuzoo.quantization.run_stage` calls it once) and :class:`Calibration`,
which every method takes: the int8 .tflite (:mod:`.tflite`), the ONNX QDQ and
mixed models (:mod:`.onnx_qdq`, :mod:`.mixed`), the quantization-aware
fine-tuning (:mod:`.qat`) and the per-layer report (:mod:`.report`).

Raw pixels as input: the model's float input is ``pixel * rescale + offset``,
and a converter derives the input's quantization from the range it sees during
calibration. The first calibration image therefore gets one pixel at 0 and one
at 255 (:attr:`Calibration.images`), so that the observed input range is
exactly the preprocessing's image of [0, 255]: the uint8 input's (scale, zero
point) of the .tflite, and the ONNX input QuantizeLinear's scale under min-max
calibration, are the preprocessing itself. The images as drawn, without that
anchor, stay in :attr:`Calibration.drawn`: the fine-tuning's fake-quant ranges
and the per-layer report run on them.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..data.core import preprocess
from ..errors import McuzooError

if TYPE_CHECKING:
    from ..config import Config
    from ..data import Dataset


class Calibration:
    """Calibration images and the preprocessing that makes them the model's input.

    ``images``: uint8 (N, H, W, C) (or (N, H, W)) training images; the model's
    input is ``pixel * rescale + offset``. :attr:`drawn` holds them as given,
    :attr:`images` with the first image anchoring the input range (see the
    module doc). ``batch_size``: images per batch of the ONNX calibration reader.
    """

    def __init__(self, images, rescale: float, offset: float, batch_size: int = 16):
        images = np.asarray(images) if images is not None else np.zeros((0,))
        if images.ndim == 0 or len(images) == 0:
            raise McuzooError("calibration set is empty: quantization needs training images")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise McuzooError(f"calibration images must be (N, H, W, C), got shape {images.shape}")
        if images.dtype != np.uint8:
            if np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 255:
                raise McuzooError("calibration images must be uint8 pixels (0-255), not preprocessed floats")
            images = images.astype(np.uint8)
        if not (isinstance(rescale, (int, float)) and math.isfinite(rescale) and rescale > 0):
            raise McuzooError(f"preprocessing rescale must be a positive number, got {rescale!r}")
        if not (isinstance(offset, (int, float)) and math.isfinite(offset)):
            raise McuzooError(f"preprocessing offset must be a number, got {offset!r}")
        self.drawn = images
        self.images = np.array(images, copy=True)
        self.images[0, 0, 0, :] = 0
        self.images[0, 0, -1, :] = 255
        self.rescale = float(rescale)
        self.offset = float(offset)
        self.batch_size = max(1, int(batch_size))

    def __len__(self) -> int:
        return int(len(self.images))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """The model's float input of uint8 ``pixels`` under this calibration's preprocessing."""
        return preprocess(pixels, self.rescale, self.offset)

    def representative_dataset(self):
        """The TFLite converter's representative dataset: one anchored float image at a time, in order."""
        def gen():
            for img in self.images:
                yield [self.model_input(img[None])]

        return gen

    def drawn_batches(self, batch: int) -> Iterator[np.ndarray]:
        """The drawn (not anchored) images as float model input, ``batch`` at a time, in order."""
        for i in range(0, len(self.drawn), batch):
            yield self.model_input(self.drawn[i:i + batch])

    def reader(self, input_name: str, input_dtype: str = "float"):
        """An onnxruntime CalibrationDataReader over the anchored images (supports strided collection)."""
        from onnxruntime.quantization import CalibrationDataReader

        cal = self

        class _Reader(CalibrationDataReader):
            def __init__(self):
                self.start, self.end = 0, None
                self.n = math.ceil(len(cal.images) / cal.batch_size)
                self.i = 0

            def __len__(self):
                return self.n

            def set_range(self, start_index: int, end_index: int):
                self.start, self.end, self.i = start_index, end_index, start_index

            def get_next(self):
                end = self.n if self.end is None else min(self.end, self.n)
                if self.i >= end:
                    return None
                b = cal.batch_size
                x = cal.images[self.i * b:(self.i + 1) * b]
                self.i += 1
                return {input_name: x if input_dtype == "uint8" else cal.model_input(x)}

            def rewind(self):
                self.i = self.start

        return _Reader()


def draw_calibration(cfg: Config, dataset: Dataset, samples: int | None = None, rescale: float | None = None,
                     offset: float | None = None) -> Calibration:
    """``samples`` (default ``cfg.quantization.calibration_samples``) training images drawn with the dataset's
    seed, under ``rescale``/``offset`` (default ``cfg.preprocessing``'s)."""
    n = cfg.quantization.calibration_samples if samples is None else int(samples)
    images = dataset.train.take(n, seed=cfg.dataset.seed)
    return Calibration(images, cfg.preprocessing.rescale if rescale is None else rescale,
                       cfg.preprocessing.offset if offset is None else offset)
