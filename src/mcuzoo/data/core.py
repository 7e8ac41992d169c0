"""`Split` and `Dataset`: labelled images held in memory or as files decoded lazily.

A split yields uint8 images at its target shape ``(H, W, C)`` and int32 labels,
either as a ``tf.data.Dataset`` (training, evaluation) or as numpy batches.
Path-based splits decode, convert channels and resize in the input pipeline;
in-memory splits are already at the target shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# ITU-R 601 luma, the weights tf.image.rgb_to_grayscale uses
_LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)

# in-memory splits larger than this are fed through a generator instead of
# being captured as one tensor by the tf.data graph
_CAPTURE_BYTES = 1 * 2**30


def _check_shape(image_shape) -> tuple[int, int, int]:
    try:
        h, w, c = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise DataError(f"image shape must be (height, width, channels), got {image_shape!r}") from None
    if c not in (1, 3) or h < 1 or w < 1:
        raise DataError(f"image shape must be (height, width, 1 or 3), got {image_shape!r}")
    return h, w, c


def _check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    return interpolation


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N,H,W,C) -> (N,H,W,channels): grayscale is repeated, RGB becomes luma."""
    c = images.shape[-1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if c == 3 and channels == 1:
        out = np.empty(images.shape[:-1] + (1,), dtype=np.uint8)
        step = max(1, 2**24 // max(1, int(np.prod(images.shape[1:]))))
        for i in range(0, len(images), step):
            g = images[i:i + step].astype(np.float32) @ _LUMA
            out[i:i + step, ..., 0] = np.clip(np.rint(g), 0, 255).astype(np.uint8)
        return out
    raise DataError(f"cannot convert {c}-channel images to {channels} channels")


def resize_images(images: np.ndarray, image_shape, interpolation: str = "bilinear") -> np.ndarray:
    """uint8 (N,h,w,c) -> uint8 (N,H,W,C) at ``image_shape`` with the given interpolation."""
    h, w, c = _check_shape(image_shape)
    _check_interpolation(interpolation)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    images = to_channels(images.astype(np.uint8, copy=False), c)
    if images.shape[1:3] == (h, w):
        return np.ascontiguousarray(images)
    import tensorflow as tf

    out = np.empty((len(images), h, w, c), dtype=np.uint8)
    step = max(1, 2**25 // max(1, h * w * c + int(np.prod(images.shape[1:]))))
    for i in range(0, len(images), step):
        r = tf.image.resize(tf.cast(images[i:i + step], tf.float32), (h, w), method=interpolation)
        out[i:i + step] = np.clip(np.rint(r.numpy()), 0, 255).astype(np.uint8)
    return out


def _tf_decode_fn(image_shape, interpolation):
    import tensorflow as tf

    h, w, c = image_shape

    def decode(path, label):
        raw = tf.io.read_file(path)
        # channels=3 works for every format (GIF and BMP refuse channels=1);
        # grayscale files are expanded, alpha is dropped
        img = tf.io.decode_image(raw, channels=3, expand_animations=False)
        img.set_shape([None, None, 3])
        x = tf.cast(img, tf.float32)
        if c == 1:
            x = tf.image.rgb_to_grayscale(x)
        x = tf.image.resize(x, (h, w), method=interpolation)
        x = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
        x.set_shape([h, w, c])
        return x, label

    return decode


@dataclass
class Split:
    """Labelled images at ``image_shape``: in memory (``images``) or files (``paths``)."""

    labels: np.ndarray
    images: Optional[np.ndarray]
    paths: Optional[list[str]]
    image_shape: tuple[int, int, int]
    interpolation: str = "bilinear"

    def __post_init__(self):
        self.image_shape = _check_shape(self.image_shape)
        _check_interpolation(self.interpolation)
        self.labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Split holds either images or paths")
        if self.images is not None:
            if self.images.dtype != np.uint8 or self.images.shape[1:] != self.image_shape:
                raise ValueError(f"images must be uint8 {self.image_shape}, got {self.images.dtype} {self.images.shape[1:]}")
            if len(self.images) != len(self.labels):
                raise ValueError("images and labels differ in length")
        else:
            self.paths = [str(p) for p in self.paths]
            if len(self.paths) != len(self.labels):
                raise ValueError("paths and labels differ in length")

    def __len__(self) -> int:
        return int(len(self.labels))

    def __repr__(self) -> str:
        kind = "in memory" if self.images is not None else "files"
        return f"Split({len(self)} images {self.image_shape}, {kind})"

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def class_counts(self, num_classes: int | None = None) -> np.ndarray:
        n = num_classes if num_classes is not None else (int(self.labels.max()) + 1 if len(self) else 0)
        return np.bincount(self.labels, minlength=n)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Split":
        idx = np.asarray(indices, dtype=np.int64)
        if self.images is not None:
            return Split(self.labels[idx], self.images[idx], None, self.image_shape, self.interpolation)
        return Split(self.labels[idx], None, [self.paths[i] for i in idx], self.image_shape, self.interpolation)

    # -- tf.data ----------------------------------------------------------

    def tf_dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> "tf.data.Dataset":
        """Batches of (uint8 images (B,H,W,C), int32 labels (B,)); ``shuffle`` reshuffles every epoch."""
        import tensorflow as tf

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        n = len(self)
        AUTOTUNE = tf.data.AUTOTUNE
        if self.images is not None:
            if self.images.nbytes <= _CAPTURE_BYTES:
                images = tf.constant(self.images)
                labels = tf.constant(self.labels)
                ds = tf.data.Dataset.range(n)
                if shuffle:
                    ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
                ds = ds.batch(batch_size).map(
                    lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)), num_parallel_calls=AUTOTUNE)
                return ds.prefetch(AUTOTUNE)
            return self._generator_dataset(batch_size, shuffle, seed)

        decode = _tf_decode_fn(self.image_shape, self.interpolation)
        ds = tf.data.Dataset.from_tensor_slices((np.array(self.paths, dtype=object).astype(str), self.labels))
        if shuffle:
            ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
        return ds.batch(batch_size).prefetch(AUTOTUNE)

    def _generator_dataset(self, batch_size, shuffle, seed):
        import tensorflow as tf

        images, labels = self.images, self.labels
        epoch = [0]

        def gen():
            n = len(labels)
            if shuffle:
                order = np.random.default_rng([int(seed) & 0xFFFFFFFF, epoch[0]]).permutation(n)
                epoch[0] += 1
            else:
                order = None
            for i in range(0, n, batch_size):
                if order is None:
                    yield images[i:i + batch_size], labels[i:i + batch_size]
                else:
                    idx = np.sort(order[i:i + batch_size])
                    yield images[idx], labels[idx]

        sig = (tf.TensorSpec((None,) + self.image_shape, tf.uint8), tf.TensorSpec((None,), tf.int32))
        return tf.data.Dataset.from_generator(gen, output_signature=sig).prefetch(tf.data.AUTOTUNE)

    # -- numpy ------------------------------------------------------------

    def numpy_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The split in order as (uint8 images, int32 labels) batches."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.images is not None:
            for i in range(0, len(self), batch_size):
                yield self.images[i:i + batch_size], self.labels[i:i + batch_size]
            return
        for x, y in self.tf_dataset(batch_size, shuffle=False).as_numpy_iterator():
            yield x, y

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """All images and labels (decodes every file of a path-based split)."""
        if self.images is not None:
            return self.images, self.labels
        xs, ys = [], []
        for x, y in self.numpy_batches(256):
            xs.append(x)
            ys.append(y)
        if not xs:
            return np.zeros((0,) + self.image_shape, np.uint8), np.zeros((0,), np.int32)
        return np.concatenate(xs), np.concatenate(ys)

    def decoded(self, max_bytes: int | None = None) -> "Split":
        """This split held in memory (files decoded once), or itself when that would exceed ``max_bytes``.

        Path-based splits decode every file each time they are iterated; for
        many epochs over a small dataset, decoding once is cheaper.
        """
        if self.images is not None:
            return self
        size = len(self) * int(np.prod(self.image_shape))
        if max_bytes is not None and size > max_bytes:
            return self
        images, labels = self.to_numpy()
        return Split(labels, images, None, self.image_shape, self.interpolation)

    def take(self, n: int, seed: int = 0) -> np.ndarray:
        """``min(n, len)`` uint8 images drawn at random (seeded), e.g. for quantization calibration."""
        total = len(self)
        n = max(0, min(int(n), total))
        idx = np.sort(np.random.default_rng(int(seed) & 0xFFFFFFFF).choice(total, size=n, replace=False)) if n else np.zeros(0, np.int64)
        if self.images is not None:
            return self.images[idx]
        return self.subset(idx).to_numpy()[0]


@dataclass
class Dataset:
    name: str
    class_names: list[str]
    train: Split
    val: Split
    test: Optional[Split]
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def eval_split(self) -> Split:
        """The test split, or validation when there is none."""
        return self.test if self.test is not None else self.val

    def summary(self) -> str:
        parts = [f"{self.name}: {self.num_classes} classes", f"train {len(self.train)}", f"val {len(self.val)}"]
        parts.append(f"test {len(self.test)}" if self.test is not None else "no test split")
        return ", ".join(parts)
