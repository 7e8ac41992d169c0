"""`Split` and `Dataset`: labelled images held in memory or as files decoded lazily.

A split yields uint8 images at its target shape ``(H, W, C)`` and int32 labels,
either as a ``tf.data.Dataset`` (training, evaluation) or as numpy batches.
Path-based splits decode, convert channels and resize in the input pipeline;
in-memory splits are already at the target shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")
ASPECTS = ("fit", "crop", "pad", "emnist")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# ITU-R 601 luma, the weights tf.image.rgb_to_grayscale uses
_LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)

# in-memory splits up to this size are captured as one tensor by the tf.data
# graph (copied once per Split); larger ones are gathered from the numpy array
# batch by batch, so that a large set is never held twice
_CONSTANT_BYTES = 64 * 2**20


def pipeline_options() -> "tf.data.Options":
    """The tf.data options of every input pipeline mcuzoo builds (`Split.tf_dataset`): autotuning off.

    With autotuning on, TensorFlow 2.21 often destroys an iterator only at its autotuning thread's next
    tuning tick: the thread waits out its period (doubling up to 60 s) instead of waking when the iterator
    is cancelled. In the flowers EfficientNet LC recipe run that left both cores idle for about 16 s at the
    end of every 26 s epoch (BENCHMARKS.md, "The cards' recipes"). Without it, ``AUTOTUNE`` maps run one
    call per CPU core and ``AUTOTUNE`` prefetch buffers still grow as needed.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


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


def _check_aspect(aspect: str) -> str:
    if aspect not in ASPECTS:
        raise DataError(f"aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
    return aspect


def cache_budget() -> int:
    """Default memory for `Split.tf_dataset(cache=True)`: a quarter of the available memory, at most 4 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return min(4 * 2**30, int(line.split()[1]) * 1024 // 4)
    except OSError:
        pass
    return 2**30


def preprocess(pixels, rescale: float, offset: float):
    """The model's float input of uint8 pixels, ``pixel * rescale + offset`` (``preprocessing.rescale`` /
    ``offset``): float32, a numpy array for a numpy array, else a TensorFlow tensor (e.g. in a tf.data map)."""
    if isinstance(pixels, np.ndarray):
        return pixels.astype(np.float32) * rescale + offset
    import tensorflow as tf

    return tf.cast(pixels, tf.float32) * rescale + offset


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


def fit_images(x, size: tuple[int, int], aspect: str = "fit", interpolation: str = "bilinear"):
    """Float image(s) (h,w,c) or (N,h,w,c) -> ``size`` (H, W), as TF ops.

    ``fit`` stretches to (H, W); ``crop`` cuts the largest centred window of
    the target's aspect ratio, then resizes it; ``pad`` resizes to fit inside
    (H, W) keeping the aspect ratio and pads the rest with zeros, centred
    (letterbox); ``emnist`` frames a glyph as NIST's EMNIST does (see `frame_glyphs`).
    """
    import tensorflow as tf

    H, W = int(size[0]), int(size[1])
    if aspect == "fit":
        return tf.image.resize(x, (H, W), method=interpolation)
    if aspect == "emnist":
        return frame_glyphs(x, (H, W), interpolation)
    shape = tf.shape(x)
    h, w = shape[-3], shape[-2]
    hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    if aspect == "crop":
        wider = wf * H > hf * W
        ch = tf.where(wider, h, tf.cast(tf.round(wf * H / W), tf.int32))
        cw = tf.where(wider, tf.cast(tf.round(hf * W / H), tf.int32), w)
        ch, cw = tf.clip_by_value(ch, 1, h), tf.clip_by_value(cw, 1, w)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return tf.image.resize(x[..., y0:y0 + ch, x0:x0 + cw, :], (H, W), method=interpolation)
    if aspect != "pad":
        raise DataError(f"aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
    s = tf.minimum(H / hf, W / wf)
    nh = tf.clip_by_value(tf.cast(tf.round(hf * s), tf.int32), 1, H)
    nw = tf.clip_by_value(tf.cast(tf.round(wf * s), tf.int32), 1, W)
    x = tf.image.resize(x, tf.stack([nh, nw]), method=interpolation)
    return tf.image.pad_to_bounding_box(x, (H - nh) // 2, (W - nw) // 2, H, W)


EMNIST_BORDER = 2  # pixels of empty border around the glyph's square, at the output size
INK_LEVEL = 0.4   # a pixel is ink when it is above this fraction of the image's brightest pixel


def frame_glyphs(x, size: tuple[int, int], interpolation: str = "bilinear"):
    """Float glyph image(s) (h,w,c) or (N,h,w,c), light ink on a dark ground -> ``size``, framed as in
    NIST's EMNIST: crop to the ink's bounding box, centre it in a square (the longer side), leave an
    ``EMNIST_BORDER``-pixel border at the output size, and resize (bilinear, or nearest).

    Glyphs of any size and place in the frame come out alike, so a model trained this way reads both
    EMNIST's framing and smaller, off-centre glyphs; a frame with no ink is only resized. Framing a
    framed glyph again gives it back (up to resampling). As TF ops, per image.
    """
    import tensorflow as tf

    H, W = int(size[0]), int(size[1])
    single = x.shape.rank == 3
    xb = x[None] if single else x
    shape = tf.shape(xb)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    lum = tf.reduce_max(xb, axis=-1)                                     # (N, h, w)
    peak = tf.reduce_max(lum, axis=[1, 2], keepdims=True)
    ink = (lum > INK_LEVEL * peak) & (peak > 0)
    rows, cols = tf.reduce_any(ink, axis=2), tf.reduce_any(ink, axis=1)  # (N, h), (N, w)
    has = tf.reduce_any(rows, axis=1)

    def bounds(mask, n):
        idx = tf.range(n, dtype=tf.float32)[None, :]
        first = tf.reduce_min(tf.where(mask, idx, n), axis=1)
        last = tf.reduce_max(tf.where(mask, idx, -1.0), axis=1)
        return first, last

    r0, r1 = bounds(rows, h)
    c0, c1 = bounds(cols, w)
    side = tf.maximum(r1 - r0, c1 - c0) + 1.0                            # the glyph's square, in pixels
    out = float(min(H, W))
    span = side * out / max(out - 2 * EMNIST_BORDER, 1.0)                # the square with its border
    cy, cx = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    # crop_and_resize samples from y1 (h-1) to y2 (h-1): put the first and last sample at pixel centres
    half_y, half_x = span / 2.0 - span / (2.0 * H), span / 2.0 - span / (2.0 * W)
    box = tf.stack([(cy - half_y) / tf.maximum(h - 1, 1.0), (cx - half_x) / tf.maximum(w - 1, 1.0),
                    (cy + half_y) / tf.maximum(h - 1, 1.0), (cx + half_x) / tf.maximum(w - 1, 1.0)], axis=1)
    whole = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [shape[0], 1])
    box = tf.where(has[:, None], box, whole)
    method = "nearest" if interpolation == "nearest" else "bilinear"
    y = tf.image.crop_and_resize(xb, box, tf.range(shape[0]), (H, W), method=method, extrapolation_value=0.0)
    return y[0] if single else y


def resize_images(images: np.ndarray, image_shape, interpolation: str = "bilinear", aspect: str = "fit") -> np.ndarray:
    """uint8 (N,h,w,c) -> uint8 (N,H,W,C) at ``image_shape`` with the given interpolation and aspect mode."""
    h, w, c = _check_shape(image_shape)
    _check_interpolation(interpolation)
    _check_aspect(aspect)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    images = to_channels(images.astype(np.uint8, copy=False), c)
    if images.shape[1:3] == (h, w) and aspect != "emnist":
        return np.ascontiguousarray(images)
    import tensorflow as tf

    out = np.empty((len(images), h, w, c), dtype=np.uint8)
    step = max(1, 2**25 // max(1, h * w * c + int(np.prod(images.shape[1:]))))
    for i in range(0, len(images), step):
        r = fit_images(tf.cast(images[i:i + step], tf.float32), (h, w), aspect, interpolation)
        out[i:i + step] = np.clip(np.rint(r.numpy()), 0, 255).astype(np.uint8)
    return out


def _orient(img, code):
    """Apply EXIF orientation ``code`` (1-8) to a decoded (h, w, c) image, as PIL's exif_transpose does."""
    import tensorflow as tf

    t = lambda: tf.transpose(img, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: img,                                  # 1: as stored
        lambda: tf.reverse(img, [1]),                 # 2: mirrored
        lambda: tf.reverse(img, [0, 1]),              # 3: rotated 180
        lambda: tf.reverse(img, [0]),                 # 4: flipped
        t,                                            # 5: transposed
        lambda: tf.image.rot90(img, k=3),             # 6: rotated 90 clockwise
        lambda: tf.reverse(t(), [0, 1]),              # 7: transverse
        lambda: tf.image.rot90(img, k=1),             # 8: rotated 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(tf.cast(code, tf.int32) - 1, 0, 7), branches)


def _jpeg_decode(raw, code, size, aspect):
    """Decode a JPEG at the largest DCT scale (1, 1/2, 1/4, 1/8) that still covers the target size.

    libjpeg's scaled decoding is much faster than decoding in full and then
    resizing, and downsamples without aliasing; the configured interpolation
    then resizes what remains.
    """
    import tensorflow as tf

    H, W = size
    shape = tf.cast(tf.image.extract_jpeg_shape(raw), tf.float32)
    swap = tf.cast(code, tf.int32) >= 5
    h = tf.where(swap, shape[1], shape[0])
    w = tf.where(swap, shape[0], shape[1])
    room = tf.maximum(h / H, w / W) if aspect == "pad" else tf.minimum(h / H, w / W)
    idx = tf.reduce_sum(tf.cast(room >= tf.constant([2.0, 4.0, 8.0]), tf.int32))
    return tf.switch_case(idx, [lambda r=r: tf.io.decode_jpeg(raw, channels=3, ratio=r) for r in (1, 2, 4, 8)])


def _tf_decode_fn(image_shape, interpolation, aspect="fit"):
    """(path, decoder code, label) -> (uint8 image at image_shape, label); codes in `images`."""
    import tensorflow as tf

    from .images import PIL_DECODE, pil_decode_rgb

    h, w, c = image_shape

    def tf_decode(path, code):
        raw = tf.io.read_file(path)
        is_jpeg = tf.strings.substr(raw, 0, 3) == b"\xff\xd8\xff"
        # channels=3 works for every format (GIF and BMP refuse channels=1);
        # grayscale files are expanded, alpha never reaches here
        img = tf.cond(is_jpeg, lambda: _jpeg_decode(raw, code, (h, w), aspect),
                      lambda: tf.io.decode_image(raw, channels=3, expand_animations=False))
        img.set_shape([None, None, 3])
        return _orient(img, code)

    def pil(path):
        img = tf.numpy_function(pil_decode_rgb, [path], tf.uint8, stateful=False)
        img.set_shape([None, None, 3])
        return img

    def decode(path, code, label):
        img = tf.cond(tf.equal(code, PIL_DECODE), lambda: pil(path), lambda: tf_decode(path, code))
        img.set_shape([None, None, 3])
        x = tf.cast(img, tf.float32)
        if c == 1:
            x = tf.image.rgb_to_grayscale(x)
        x = fit_images(x, (h, w), aspect, interpolation)
        x = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
        x.set_shape([h, w, c])
        return x, label

    return decode


@dataclass
class Split:
    """Labelled images at ``image_shape``: in memory (``images``) or files (``paths``).

    Path-based splits carry, per file, the decoder code and displayed size that
    `images.index_files` found (``decode``, ``sizes``); when they are missing
    the files are checked on first use.
    """

    labels: np.ndarray
    images: Optional[np.ndarray]
    paths: Optional[list[str]]
    image_shape: tuple[int, int, int]
    interpolation: str = "bilinear"
    aspect: str = "fit"
    decode: Optional[np.ndarray] = field(default=None, repr=False)
    sizes: Optional[np.ndarray] = field(default=None, repr=False)
    _tensors: Any = field(default=None, init=False, repr=False, compare=False)
    _decoded: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.image_shape = _check_shape(self.image_shape)
        _check_interpolation(self.interpolation)
        _check_aspect(self.aspect)
        self.labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Split holds either images or paths")
        if self.images is not None:
            if self.images.dtype != np.uint8 or self.images.shape[1:] != self.image_shape:
                raise ValueError(f"images must be uint8 {self.image_shape}, got {self.images.dtype} {self.images.shape[1:]}")
            if len(self.images) != len(self.labels):
                raise ValueError("images and labels differ in length")
        else:
            self.paths = [str(p) for p in self.paths or ()]
            if len(self.paths) != len(self.labels):
                raise ValueError("paths and labels differ in length")
            if self.decode is not None:
                self.decode = np.asarray(self.decode, dtype=np.int8).reshape(-1)
                if len(self.decode) != len(self.paths):
                    raise ValueError("paths and decode codes differ in length")
            if self.sizes is not None:
                self.sizes = np.asarray(self.sizes, dtype=np.int32).reshape(-1, 2)

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

    def _like(self, labels, images=None, paths=None, decode=None, sizes=None) -> "Split":
        return Split(labels, images, paths, self.image_shape, self.interpolation, self.aspect, decode, sizes)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Split":
        idx = np.asarray(indices, dtype=np.int64)
        if self.images is not None:
            return self._like(self.labels[idx], images=self.images[idx])
        assert self.paths is not None  # a split holds images or paths
        return self._like(self.labels[idx], paths=[self.paths[i] for i in idx],
                          decode=self.decode[idx] if self.decode is not None else None,
                          sizes=self.sizes[idx] if self.sizes is not None else None)

    def _decode_codes(self) -> np.ndarray:
        """Per-file decoder codes, checking the files now when nobody did (a bad file raises DataError)."""
        if self.decode is None:
            from .images import index_files

            assert self.paths is not None  # only file splits have no decoder codes
            index = index_files(self.paths, skip_bad=False, what="split")
            self.decode, self.sizes = index.decode, index.sizes
        return self.decode

    # -- tf.data ----------------------------------------------------------

    def tf_dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                   cache: bool | int = False) -> "tf.data.Dataset":
        """Batches of (uint8 images (B,H,W,C), int32 labels (B,)); ``shuffle`` reshuffles every epoch.

        Path-based splits stream: files are decoded in parallel as batches are
        needed, with prefetch. ``cache=True`` (or a byte budget) decodes the
        split once into memory, kept by this Split for later calls, when it
        fits the budget (default `cache_budget`); otherwise it streams as
        without it. Batches are the same either way. The pipeline carries
        `pipeline_options` (no tf.data autotuning thread), and so does every
        dataset made from it.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.images is None and cache:
            budget = cache_budget() if cache is True else int(cache)
            if self._decoded is None and len(self) * int(np.prod(self.image_shape)) <= budget:
                self._decoded = self.decoded()
            if self._decoded is not None:
                return self._decoded.tf_dataset(batch_size, shuffle, seed)
        return self._batches(batch_size, shuffle, seed).with_options(pipeline_options())

    def _batches(self, batch_size: int, shuffle: bool, seed: int) -> "tf.data.Dataset":
        """`tf_dataset` of this split as it is (in memory, or files decoded as they are needed)."""
        import tensorflow as tf

        n = len(self)
        AUTOTUNE = tf.data.AUTOTUNE
        if self.images is not None:
            ds = tf.data.Dataset.range(n)
            if shuffle:
                ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
            ds = ds.batch(batch_size)
            if self.images.nbytes <= _CONSTANT_BYTES:
                if self._tensors is None:
                    self._tensors = (tf.constant(self.images), tf.constant(self.labels))
                images, labels = self._tensors
                ds = ds.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)), num_parallel_calls=AUTOTUNE)
            else:
                ds = ds.map(self._numpy_gather(), num_parallel_calls=AUTOTUNE)
            return ds.prefetch(AUTOTUNE)

        decode = _tf_decode_fn(self.image_shape, self.interpolation, self.aspect)
        paths = np.array(self.paths, dtype=object).astype(str)
        ds = tf.data.Dataset.from_tensor_slices((paths, self._decode_codes(), self.labels))
        if shuffle:
            ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
        return ds.batch(batch_size).prefetch(AUTOTUNE)

    def _numpy_gather(self):
        """A map function taking a batch of indices to (images, labels) read from the numpy arrays (no copy of the split)."""
        import tensorflow as tf

        images, labels, shape = self.images, self.labels, self.image_shape
        assert images is not None, "a split of files has no arrays to gather from"

        def gather(idx):
            return images[idx], labels[idx]

        def fn(idx):
            x, y = tf.numpy_function(gather, [idx], (tf.uint8, tf.int32), stateful=False)
            x.set_shape((None,) + shape)
            y.set_shape((None,))
            return x, y

        return fn

    # -- numpy ------------------------------------------------------------

    def numpy_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The split in order as (uint8 images, int32 labels) batches."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.images is not None:
            for i in range(0, len(self), batch_size):
                yield self.images[i:i + batch_size], self.labels[i:i + batch_size]
            return
        if self._decoded is not None:
            yield from self._decoded.numpy_batches(batch_size)
            return
        import tensorflow as tf

        it = self.tf_dataset(batch_size, shuffle=False).as_numpy_iterator()
        while True:
            try:
                x, y = next(it)
            except StopIteration:
                return
            except tf.errors.OpError as e:  # a file changed since it was checked, or a crafted one
                raise self.decode_error(e) from None
            yield x, y

    def first_undecodable(self) -> str | None:
        """``path: reason`` of the first file of this split that does not decode in full (PIL), else None:
        called once a decoder has failed, to name the file."""
        from .images import inspect_file, pil_decode_rgb

        for p in self.paths or []:
            info = inspect_file(p)
            if info.error is not None:
                return f"bad image file {p}: {info.error}"
            try:
                pil_decode_rgb(p)
            except DataError as e:
                return str(e)
        return None

    def decode_error(self, e: Exception) -> DataError:
        """The one-line error for a decoder failure inside a tf.data pipeline over this split, naming the file."""
        found = self.first_undecodable()
        if found:
            return DataError(found)
        msg = (getattr(e, "message", None) or str(e)).strip().splitlines()
        return DataError(f"cannot decode an image of this split: {msg[0][:300] if msg else type(e).__name__}")

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """All images and labels (decodes every file of a path-based split)."""
        if self.images is not None:
            return self.images, self.labels
        out = np.empty((len(self),) + self.image_shape, dtype=np.uint8)
        i = 0
        for x, _ in self.numpy_batches(256):
            out[i:i + len(x)] = x
            i += len(x)
        return out, self.labels

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
        return self._like(labels, images=images)

    def take(self, n: int, seed: int = 0) -> np.ndarray:
        """``min(n, len)`` uint8 images drawn at random (seeded), e.g. for quantization calibration."""
        total = len(self)
        n = max(0, min(int(n), total))
        idx = np.sort(np.random.default_rng(int(seed) & 0xFFFFFFFF).choice(total, size=n, replace=False)) if n else np.zeros(0, np.int64)
        if self.images is not None:
            return self.images[idx]
        if self._decoded is not None:
            return self._decoded.images[idx]
        return self.subset(idx).to_numpy()[0]


@dataclass
class Dataset:
    name: str
    class_names: list[str]
    train: Split
    val: Split
    test: Optional[Split]
    notes: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # "path: reason" of each bad file skipped

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def eval_split(self) -> Split:
        """The split a run evaluates on: the test split, or validation when there is none (or it is empty)."""
        return self.test if self.test is not None and len(self.test) else self.val

    @property
    def eval_split_name(self) -> str:
        """'test' or 'validation': the name of :attr:`eval_split`."""
        return "test" if self.eval_split is self.test else "validation"

    def summary(self) -> str:
        parts = [f"{self.name}: {self.num_classes} classes", f"train {len(self.train)}", f"val {len(self.val)}"]
        parts.append(f"test {len(self.test)}" if self.test is not None else "no test split")
        return ", ".join(parts)
