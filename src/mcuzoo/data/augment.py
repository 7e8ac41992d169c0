"""Training-time augmentation on uint8 batches, in TF ops, deterministic for a seed.

    aug = augment_fn(cfg.augmentation, seed)          # None when every rate is 0
    ds = split.tf_dataset(batch, shuffle=True, seed=s)
    if aug is not None:
        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)   # before preprocessing
    ds = ds.map(preprocess)

Each kind of augmentation applies to each image independently with its own
probability ``rate``, in this order: flip; affine warps for rotation,
translation, zoom and shear (one warp per fill mode: kinds that share a
``fill_mode`` are combined into one warp, so that e.g. the EfficientNet LC
recipe's reflect-filled rotation/translation/zoom and wrap-filled shear take two);
brightness, contrast, gamma; hue and saturation; grayscale (those three on RGB
images only); blur; gaussian noise; random erasing (1..``max_count`` boxes).
Pixels are computed in float32 and rounded back to uint8.

Recipes in other units (ST model zoo / Keras layers): a rotation factor f is a
fraction of a full turn, ``max_degrees = 360 f`` (0.125 -> 45); a zoom factor z is
``min_scale = 1 - z, max_scale = 1 + z``; a contrast factor c is
``min_factor = 1 - c, max_factor = 1 + c``; a translation factor is already a
fraction of the size; a shear factor s (a shear tangent) is
``max_degrees = atan(s)`` in degrees; a noise stddev on [0, 1] inputs is times 255
(on [-1, 1] inputs times 127.5) in pixel levels.

Randomness: only stateless random ops (``tf.random.stateless_*``), with a
per-batch key derived from ``seed`` and

- the batch's content: ``ds.map(aug)`` on (images, labels) batches folds a
  fingerprint (farmhash64) of the batch's pixels and labels into ``seed``. The
  same batch therefore always gets the same augmentation, whatever the thread
  that runs it (``num_parallel_calls`` is safe), and since train.py shuffles
  every epoch with its own seed, each epoch's batches (and their
  augmentations) differ. Nothing is stateful, so a resumed run augments
  exactly like an uninterrupted one;
- or a batch counter: ``ds.enumerate().map(aug)`` (elements ``(i, (images,
  labels))``) folds ``i`` into ``seed`` instead. Pass a seed that changes per
  epoch (e.g. ``seed * 1000 + epoch``), since the counter restarts at 0.

Within a batch, every image draws its own parameters from the batch key.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

from ..config import AugmentationConfig

_KINDS = ("flip", "rotation", "translation", "zoom", "shear", "contrast", "brightness", "gamma", "hue",
          "saturation", "grayscale", "noise", "blur", "erasing")
_GEOMETRIC = ("rotation", "translation", "zoom", "shear")
_YIQ = [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]  # RGB -> YIQ (NTSC)
_YIQ_INV = [[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]   # YIQ -> RGB


def _warp_groups(cfg: AugmentationConfig) -> list[tuple[str, ...]]:
    """The geometric kinds that are on, grouped by their fill mode (first-use order): one warp per group."""
    groups: dict[str, list[str]] = {}
    for k in _GEOMETRIC:
        if getattr(cfg, k).rate > 0:
            groups.setdefault(_fill_mode(cfg, k), []).append(k)
    return [tuple(v) for v in groups.values()]


def _fill_mode(cfg: AugmentationConfig, kind: str) -> str:
    """The fill mode of a geometric kind: its own, else ``augmentation.fill_mode``."""
    return getattr(cfg, kind).fill_mode or cfg.fill_mode


def active(cfg: AugmentationConfig) -> list[str]:
    """Names of the augmentations with a rate above 0."""
    return [k for k in _KINDS if getattr(cfg, k).rate > 0
            and not (k == "flip" and not (cfg.flip.horizontal or cfg.flip.vertical))]


def augment_fn(aug_cfg: AugmentationConfig, seed: int) -> Optional[Callable]:
    """A tf.data map function (images uint8 (B,H,W,C), labels) -> (augmented uint8 images, labels),
    or None when no augmentation is on. See the module docstring for how it is seeded."""
    if aug_cfg is None or not active(aug_cfg):
        return None
    return Augmenter(aug_cfg, seed)


class Augmenter:
    """The callable `augment_fn` returns; ``apply(images, key)`` is the augmentation itself."""

    def __init__(self, cfg: AugmentationConfig, seed: int):
        self.cfg = cfg
        self.seed = int(seed)
        self.kinds = active(cfg)

    def __repr__(self) -> str:
        return f"Augmenter({', '.join(self.kinds)}; seed {self.seed})"

    def _base(self):
        import tensorflow as tf

        s = self.seed & 0xFFFFFFFFFFFFFFFF
        return tf.constant([s & 0x7FFFFFFF, (s >> 31) & 0x7FFFFFFF], dtype=tf.int64)

    def __call__(self, *args):
        import tensorflow as tf

        fold = tf.random.experimental.stateless_fold_in
        if len(args) == 2 and isinstance(args[1], (tuple, list)):  # Dataset.enumerate(): (i, (images, labels))
            step, (images, labels) = args[0], tuple(args[1])
            key = fold(self._base(), tf.cast(step, tf.int64))
            return self.apply(images, key), labels
        images, labels = args
        fp_x = tf.bitcast(tf.fingerprint(tf.reshape(images, [1, -1]))[0], tf.int64)
        fp_y = tf.bitcast(tf.fingerprint(tf.reshape(tf.cast(labels, tf.int64), [1, -1]))[0], tf.int64)
        key = fold(fold(self._base(), fp_x), fp_y)
        return self.apply(images, key), labels

    # ------------------------------------------------------------------

    def apply(self, images, key):
        """uint8 (B,H,W,C) -> uint8 (B,H,W,C), every random draw a stateless function of ``key``."""
        import tensorflow as tf

        cfg = self.cfg
        shape = images.shape
        if shape.rank != 4 or not shape[1:].is_fully_defined():
            raise ValueError(f"augmentation needs batches of known (H, W, C), got {shape}")
        H, W, C = int(shape[1]), int(shape[2]), int(shape[3])
        d = _Draws(key, tf.shape(images)[0])
        x = tf.cast(self._flip(images, d), tf.float32)
        # -- affine warps: one per fill mode, each combining the geometric kinds that use it
        for kinds in _warp_groups(cfg):
            x = self._warp(x, kinds, d.uniform, d.chosen, d.B, H, W)
        # -- colour
        if cfg.brightness.rate > 0:
            x = self._brightness(x, d)
        if cfg.contrast.rate > 0:
            x = self._contrast(x, d)
        if cfg.gamma.rate > 0:
            x = self._gamma(x, d)
        if C == 3 and cfg.hue.rate > 0:
            x = self._hue(x, d)
        if C == 3 and cfg.saturation.rate > 0:
            x = self._saturation(x, d)
        if C == 3 and cfg.grayscale.rate > 0:
            x = self._grayscale(x, d)
        if cfg.blur.rate > 0:
            x = self._blur(x, d, H, W, C)
        if cfg.noise.rate > 0:
            x = self._noise(x, d)
        if cfg.erasing.rate > 0:
            x = self._erase(x, key, d.uniform, d.chosen, d.B, H, W)
        out = tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8)
        out.set_shape(images.shape)
        return out

    def _flip(self, x, d: "_Draws"):
        """Mirror the chosen images left-right and/or top-bottom (on uint8: a quarter of the memory traffic)."""
        import tensorflow as tf

        f = self.cfg.flip
        if f.rate > 0:
            if f.horizontal:
                x = tf.where(_per_image(d.chosen(1, f.rate)), tf.reverse(x, [2]), x)
            if f.vertical:
                x = tf.where(_per_image(d.chosen(2, f.rate)), tf.reverse(x, [1]), x)
        return x

    def _brightness(self, x, d: "_Draws"):
        """Add a delta of up to ``max_delta`` of full scale to the chosen images."""
        import tensorflow as tf

        b = self.cfg.brightness
        delta = b.max_delta * 255.0
        return tf.clip_by_value(x + _per_image(tf.where(d.chosen(8, b.rate), d.uniform(8, -delta, delta), 0.0)),
                                0.0, 255.0)

    def _contrast(self, x, d: "_Draws"):
        """Scale the chosen images' distance to their own mean by a factor."""
        import tensorflow as tf

        c = self.cfg.contrast
        f = tf.where(d.chosen(9, c.rate), d.uniform(9, c.min_factor, c.max_factor), 1.0)
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        return tf.clip_by_value((x - mean) * _per_image(f) + mean, 0.0, 255.0)

    def _gamma(self, x, d: "_Draws"):
        """Raise the chosen images (on [0, 1]) to a gamma drawn log-uniformly."""
        import tensorflow as tf

        gm = self.cfg.gamma
        lo, hi = math.log(gm.min_gamma), math.log(gm.max_gamma)
        g = tf.where(d.chosen(10, gm.rate), tf.exp(d.uniform(10, lo, hi)) if hi > lo
                     else tf.fill([d.B], gm.min_gamma), 1.0)
        return 255.0 * tf.pow(tf.clip_by_value(x, 0.0, 255.0) / 255.0, _per_image(g))

    def _hue(self, x, d: "_Draws"):
        """A rotation of the chroma plane of YIQ: luma stays, the colour circle turns by 2 pi dh (RGB only)."""
        import tensorflow as tf

        dh = self.cfg.hue.max_delta
        a = 2.0 * math.pi * tf.where(d.chosen(11, self.cfg.hue.rate), d.uniform(11, -dh, dh), 0.0)
        ca, sa = tf.cos(a), tf.sin(a)
        o, z = tf.ones_like(a), tf.zeros_like(a)
        rot = tf.reshape(tf.stack([o, z, z, z, ca, -sa, z, sa, ca], axis=1), [-1, 3, 3])
        m = tf.matmul(tf.matmul(tf.constant(_YIQ_INV)[None], rot), tf.constant(_YIQ)[None])  # (B, 3, 3)
        return tf.clip_by_value(tf.einsum("bhwc,bdc->bhwd", x, m), 0.0, 255.0)

    def _saturation(self, x, d: "_Draws"):
        """Scale the chosen images' HSV saturation by a factor (RGB only)."""
        import tensorflow as tf

        sat = self.cfg.saturation
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(x, 0.0, 255.0) / 255.0)
        h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        f = tf.where(d.chosen(12, sat.rate), d.uniform(12, sat.min_factor, sat.max_factor), 1.0)
        s = tf.clip_by_value(s * tf.reshape(f, [-1, 1, 1]), 0.0, 1.0)
        return tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)) * 255.0

    def _grayscale(self, x, d: "_Draws"):
        """The chosen images' luma (ITU-R 601) in every channel."""
        import tensorflow as tf

        luma = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
        return tf.where(_per_image(d.chosen(16, self.cfg.grayscale.rate)), tf.tile(luma, [1, 1, 1, 3]), x)

    def _blur(self, x, d: "_Draws", H: int, W: int, C: int):
        """A separable gaussian per image (sigma 0 = identity), as a depthwise convolution over the batch
        folded into channels, so that every image has its own kernel."""
        import tensorflow as tf

        smax = self.cfg.blur.max_sigma
        r = max(1, min(int(math.ceil(3 * smax)), H, W))
        sigma = tf.where(d.chosen(13, self.cfg.blur.rate), d.uniform(13, min(0.3, smax), smax), 0.0)
        taps = tf.range(-r, r + 1, dtype=tf.float32)
        k = tf.exp(-tf.square(taps)[None, :] / (2.0 * tf.square(sigma)[:, None] + 1e-6))
        k = tf.transpose(tf.repeat(k / tf.reduce_sum(k, axis=1, keepdims=True), C, axis=0))  # (taps, B*C)
        z = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, H, W, -1])
        z = tf.pad(z, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
        z = tf.nn.depthwise_conv2d(z, k[None, :, :, None], [1, 1, 1, 1], "VALID")
        z = tf.nn.depthwise_conv2d(z, k[:, None, :, None], [1, 1, 1, 1], "VALID")
        return tf.transpose(tf.reshape(z, [H, W, -1, C]), [2, 0, 1, 3])

    def _noise(self, x, d: "_Draws"):
        """Gaussian noise of a per-image standard deviation on the chosen images."""
        import tensorflow as tf

        n = self.cfg.noise
        std = tf.where(d.chosen(14, n.rate), d.uniform(14, n.min_stddev, n.max_stddev), 0.0)
        return x + _per_image(std) * tf.random.stateless_normal(
            tf.shape(x), seed=tf.random.experimental.stateless_fold_in(d.key, 214))

    def _warp(self, x, kinds, uniform, chosen, B, H, W):
        """One projective warp of float images for the geometric ``kinds`` (which share a fill mode)."""
        import tensorflow as tf

        cfg = self.cfg
        zero, one = tf.zeros([B]), tf.ones([B])
        theta = tx = ty = shear = zero
        scale = one
        if "rotation" in kinds:
            d = cfg.rotation.max_degrees * math.pi / 180
            theta = tf.where(chosen(3, cfg.rotation.rate), uniform(3, -d, d), zero)
        if "translation" in kinds:
            t = cfg.translation
            fx, fy = t.max_fraction, t.max_fraction_y if t.max_fraction_y is not None else t.max_fraction
            on = chosen(4, t.rate)
            tx = tf.where(on, uniform(4, -fx, fx) * W, zero)
            ty = tf.where(on, uniform(5, -fy, fy) * H, zero)
        if "zoom" in kinds:
            lo, hi = math.log(cfg.zoom.min_scale), math.log(cfg.zoom.max_scale)
            scale = tf.where(chosen(5, cfg.zoom.rate), tf.exp(uniform(6, lo, hi)) if hi > lo
                             else one * cfg.zoom.min_scale, one)
        if "shear" in kinds:
            d = cfg.shear.max_degrees * math.pi / 180
            shear = tf.where(chosen(6, cfg.shear.rate), tf.tan(uniform(7, -d, d)), zero)
        # output = A (input - c) + c + t with A = rotation . shear . zoom; the op wants input = M output + m
        c, s = tf.cos(theta), tf.sin(theta)
        m00, m01 = (c + shear * s) / scale, (s - shear * c) / scale
        m10, m11 = -s / scale, c / scale
        cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
        a2 = cx - (m00 * (cx + tx) + m01 * (cy + ty))
        b2 = cy - (m10 * (cx + tx) + m11 * (cy + ty))
        transforms = tf.stack([m00, m01, a2, m10, m11, b2, zero, zero], axis=1)
        fill_mode = _fill_mode(cfg, kinds[0])  # the group's shared mode
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=transforms, output_shape=tf.constant([H, W], tf.int32),
            fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode=fill_mode.upper())

    def _erase(self, x, key, uniform, chosen, B, H, W):
        """Random erasing: a chosen image gets 1..max_count boxes, each of its own area, aspect and place,
        filled with noise, zeros or one random colour per box (a later box covers an earlier one).
        The boxes are (B, H, W) masks; the image is touched once, by one select."""
        import tensorflow as tf

        e = self.cfg.erasing
        fold = tf.random.experimental.stateless_fold_in
        C = int(x.shape[-1])
        on = chosen(15, e.rate)
        count = (tf.random.stateless_uniform([B], seed=fold(key, 216), minval=1, maxval=e.max_count + 1,
                                             dtype=tf.int32) if e.max_count > 1 else tf.ones([B], tf.int32))
        rows = tf.range(H, dtype=tf.float32)[None, :, None]
        cols = tf.range(W, dtype=tf.float32)[None, None, :]
        col = lambda v: tf.reshape(v, [-1, 1, 1])  # noqa: E731
        la = math.log(e.max_aspect)
        which = -tf.ones([B, H, W], tf.int32)  # the box that covers each pixel, -1: none
        for r in range(e.max_count):
            off = 0 if r == 0 else 1000 * (r + 1)  # box r has its own streams; box 0 keeps the single-box ones
            area = uniform(15 + off, e.min_area, e.max_area) * float(H * W)
            ratio = tf.exp(uniform(16 + off, -la, la)) if la > 0 else tf.ones([B])
            eh = tf.clip_by_value(tf.round(tf.sqrt(area * ratio)), 1.0, float(H))
            ew = tf.clip_by_value(tf.round(tf.sqrt(area / ratio)), 1.0, float(W))
            y0 = tf.floor(uniform(17 + off) * (H - eh + 1.0))
            x0 = tf.floor(uniform(18 + off) * (W - ew + 1.0))
            inside = ((rows >= col(y0)) & (rows < col(y0 + eh)) & (cols >= col(x0)) & (cols < col(x0 + ew))
                      & col(on & (count > r)))
            which = tf.where(inside, r, which)
        erased = (which >= 0)[..., None]
        if e.fill == "noise":
            fill = tf.random.stateless_uniform(tf.shape(x), seed=fold(key, 215), maxval=255.0)
        elif e.fill == "colour":
            colours = tf.random.stateless_uniform([B, e.max_count, C], seed=fold(key, 217), maxval=255.0)
            idx = tf.reshape(tf.maximum(which, 0), [B, H * W])
            fill = tf.reshape(tf.gather(colours, idx, batch_dims=1), [B, H, W, C])
        else:
            fill = tf.zeros_like(x)
        return tf.where(erased, fill, x)


class _Draws:
    """The random draws of one batch of ``B`` images: stream ``i`` is a stateless function of ``key`` and ``i``."""

    def __init__(self, key, B) -> None:
        self.key, self.B = key, B

    def uniform(self, i, lo=0.0, hi=1.0):
        """One value per image, uniform in [lo, hi), from stream ``i``."""
        import tensorflow as tf

        return tf.random.stateless_uniform([self.B], seed=tf.random.experimental.stateless_fold_in(self.key, i),
                                           minval=lo, maxval=hi)

    def chosen(self, i, rate):
        """Per image, whether kind ``i`` applies to it (probability ``rate``; stream 100 + i)."""
        return self.uniform(100 + i) < rate


def _per_image(v):
    """A per-image vector (B,) shaped to scale or select whole (B, H, W, C) images."""
    import tensorflow as tf

    return tf.reshape(v, [-1, 1, 1, 1])
