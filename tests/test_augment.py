"""Augmentation: rates, determinism, each kind's effect, grayscale, and the ``mcuzoo data`` sub-verbs."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import tensorflow as tf

from mcuzoo.config import AugmentationConfig, load_config
from mcuzoo.data.augment import active, augment_fn
from mcuzoo.errors import ConfigError

KINDS = ["flip", "rotation", "translation", "zoom", "shear", "contrast", "brightness", "gamma", "hue",
         "saturation", "grayscale", "noise", "blur", "erasing"]


def cfg_of(**kinds) -> AugmentationConfig:
    return AugmentationConfig.model_validate(kinds)


def batch(n=8, h=24, w=20, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    return tf.constant(x), tf.constant(np.arange(n, dtype=np.int32))


def run(cfg, x, y=None, seed=0):
    aug = augment_fn(cfg, seed)
    assert aug is not None
    out, labels = aug(x, y if y is not None else tf.zeros([x.shape[0]], tf.int32))
    assert out.dtype == tf.uint8 and out.shape == x.shape
    return out.numpy()


def test_off_by_default_and_config_errors():
    assert augment_fn(AugmentationConfig(), 0) is None
    assert augment_fn(cfg_of(flip={"rate": 1.0, "horizontal": False}), 0) is None
    assert active(cfg_of(blur={"rate": 0.2}, hue={"rate": 0.1})) == ["hue", "blur"]
    with pytest.raises(ConfigError, match="augmentation.zoom.*min_scale must not exceed max_scale"):
        load_config(None, ["augmentation.zoom.min_scale=1.5", "augmentation.zoom.max_scale=1.2"])
    with pytest.raises(ConfigError, match="augmentation.flip.rate"):
        load_config(None, ["augmentation.flip.rate=1.5"])
    with pytest.raises(ConfigError, match="unknown config key 'augmentation.blurr'"):
        load_config(None, ["augmentation.blurr.rate=0.5"])
    cfg = load_config(None, ["augmentation.rotation.rate=0.5", "augmentation.fill_mode=reflect"])
    assert cfg.augmentation.rotation.rate == 0.5 and cfg.augmentation.fill_mode == "reflect"


def test_deterministic_for_a_seed():
    cfg = cfg_of(**{k: {"rate": 0.6} for k in KINDS})
    x, y = batch()
    a, b = run(cfg, x, y, seed=5), run(cfg, x, y, seed=5)
    assert np.array_equal(a, b) and not np.array_equal(a, x.numpy())
    assert not np.array_equal(a, run(cfg, x, y, seed=6))
    # a different batch gets different draws
    x2 = tf.concat([x[1:], x[:1]], 0)
    y2 = tf.concat([y[1:], y[:1]], 0)
    assert not np.array_equal(run(cfg, x2, y2, seed=5)[:-1], a[1:])

    # in tf.data: parallel calls, two passes, the same result; the counter form too
    aug = augment_fn(cfg, 5)
    images = np.random.default_rng(1).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(24, dtype=np.int32))).batch(6)
    par = ds.map(aug, num_parallel_calls=4)
    p1 = [v.numpy() for v, _ in par]
    p2 = [v.numpy() for v, _ in par]
    assert all(np.array_equal(u, v) for u, v in zip(p1, p2))
    c1 = [v.numpy() for v, _ in ds.enumerate().map(aug)]
    c2 = [v.numpy() for v, _ in ds.enumerate().map(aug, num_parallel_calls=3)]
    assert all(np.array_equal(u, v) for u, v in zip(c1, c2)) and not np.array_equal(c1[0], p1[0])


def test_rates_are_per_image():
    x, y = batch(n=64, h=8, w=8)
    out = run(cfg_of(flip={"rate": 0.5}), x, y)
    mirrored = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x.numpy())]
    same = [np.array_equal(o, xi) for o, xi in zip(out, x.numpy())]
    assert all(m or s for m, s in zip(mirrored, same)) and 16 < sum(mirrored) < 48
    assert np.array_equal(run(cfg_of(flip={"rate": 1.0}), x, y), x.numpy()[:, :, ::-1])
    assert np.array_equal(run(cfg_of(flip={"rate": 1.0, "horizontal": False, "vertical": True}), x, y),
                          x.numpy()[:, ::-1])


def test_geometry():
    x, y = batch(n=4, h=32, w=32)
    xn = x.numpy().astype(int)
    # zoom 1 and zero shift are the identity: the warp is centred right
    same = run(cfg_of(zoom={"rate": 1.0, "min_scale": 1.0, "max_scale": 1.0}), x, y)
    assert np.abs(same.astype(int) - xn).max() <= 1
    # zoom 2: the centre half fills the image
    z = run(cfg_of(zoom={"rate": 1.0, "min_scale": 2.0, "max_scale": 2.0}), x, y).astype(float)
    ref = tf.image.resize(tf.cast(x[:, 8:24, 8:24], tf.float32), (32, 32), "bilinear").numpy()
    assert np.abs(z - ref)[:, 2:-2, 2:-2].mean() < 12
    # zoom out with constant fill: black border; with reflect, none
    small = run(cfg_of(zoom={"rate": 1.0, "min_scale": 0.5, "max_scale": 0.5}), x, y)
    assert (small[:, :6] == 0).all() and (small[:, 10:22, 10:22] > 0).any()
    refl = run(cfg_of(zoom={"rate": 1.0, "min_scale": 0.5, "max_scale": 0.5}, fill_mode="reflect"), x, y)
    assert (refl[:, :6] > 0).mean() > 0.9
    # rotation, translation, shear move pixels but keep the shape
    for kind, params in (("rotation", {"max_degrees": 30}), ("translation", {"max_fraction": 0.2}),
                         ("shear", {"max_degrees": 20})):
        out = run(cfg_of(**{kind: {"rate": 1.0, **params}}), x, y)
        assert np.abs(out.astype(int) - xn).mean() > 10, kind


def test_colour():
    flat = tf.constant(np.full((6, 10, 10, 3), 100, np.uint8))
    b = run(cfg_of(brightness={"rate": 1.0, "max_delta": 0.3}), flat)
    assert all(len(np.unique(img)) == 1 for img in b) and len(np.unique(b[:, 0, 0, 0])) > 1
    assert np.abs(b.astype(int) - 100).max() <= 77
    x, y = batch(n=6)
    c = run(cfg_of(contrast={"rate": 1.0, "min_factor": 0.0, "max_factor": 0.0}), x, y)
    assert all(img.std(axis=(0, 1)).max() < 1 for img in c)  # no contrast left: each channel flat at its mean
    g = run(cfg_of(gamma={"rate": 1.0, "min_gamma": 2.0, "max_gamma": 2.0}), x, y).astype(float)
    assert np.abs(g - 255 * (x.numpy() / 255.0) ** 2).max() <= 1
    # hue turns colours and keeps luma; saturation keeps value (max channel); grayscale images are left alone
    hs = cfg_of(hue={"rate": 1.0, "max_delta": 0.3}, saturation={"rate": 1.0})
    out = run(hs, x, y)
    assert not np.array_equal(out, x.numpy())
    sat = run(cfg_of(saturation={"rate": 1.0}), x, y)
    assert not np.array_equal(sat, x.numpy())
    assert np.abs(sat.max(-1).astype(int) - x.numpy().max(-1)).max() <= 1
    grey = np.full((4, 8, 8, 3), 0, np.uint8) + np.array([150, 100, 100], np.uint8)  # a pale red: a turn needs no clipping
    hue = run(cfg_of(hue={"rate": 1.0, "max_delta": 0.15}), tf.constant(grey)).astype(float)
    luma = lambda a: a @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    assert np.abs(luma(hue) - luma(grey.astype(float))).max() < 2
    assert np.abs(hue - grey).max() > 5
    assert np.array_equal(run(cfg_of(hue={"rate": 1.0, "max_delta": 1e-6}), x, y), x.numpy())
    gx, gy = batch(n=6, c=1)
    assert np.array_equal(run(hs, gx, gy), gx.numpy())
    assert augment_fn(cfg_of(hue={"rate": 1.0}), 0) is not None


def test_noise_blur_erasing():
    flat = tf.constant(np.full((8, 32, 32, 3), 128, np.uint8))
    n = run(cfg_of(noise={"rate": 1.0, "max_stddev": 20.0}), flat).astype(float)
    assert abs(n.mean() - 128) < 2 and n.std() > 2
    assert np.array_equal(run(cfg_of(blur={"rate": 1.0, "max_sigma": 2.0}), flat), flat.numpy())
    dot = np.zeros((2, 21, 21, 1), np.uint8)
    dot[:, 10, 10] = 255
    bl = run(cfg_of(blur={"rate": 1.0, "max_sigma": 1.5}), tf.constant(dot)).astype(float)
    assert (bl[:, 10, 10, 0] < 255).all() and (bl[:, 10, 11, 0] > 0).all() and abs(bl.sum() / 2 - 255) < 30
    white = tf.constant(np.full((16, 20, 20, 1), 255, np.uint8))
    e = run(cfg_of(erasing={"rate": 1.0, "min_area": 0.1, "max_area": 0.2, "fill": "zero"}), white)
    zeros = (e == 0).reshape(16, -1).sum(1) / 400
    assert (zeros > 0.05).all() and (zeros < 0.3).all()
    rows = (e[..., 0] == 0).any(2)
    assert all(np.ptp(np.flatnonzero(r)) + 1 == r.sum() for r in rows)  # one solid rectangle
    noisy = run(cfg_of(erasing={"rate": 1.0, "fill": "noise"}), white)
    assert (noisy < 255).any()


def test_grayscale_kind():
    x, y = batch(n=6)
    g = run(cfg_of(grayscale={"rate": 1.0}), x, y).astype(int)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    luma = (x.numpy().astype(float) * [0.299, 0.587, 0.114]).sum(-1)
    assert np.abs(g[..., 0] - luma).max() <= 1
    half = run(cfg_of(grayscale={"rate": 0.5}), *batch(n=64))
    grey = (half[..., 0] == half[..., 1]).all((1, 2)) & (half[..., 1] == half[..., 2]).all((1, 2))
    assert 10 < grey.sum() < 54
    gx, gy = batch(n=4, c=1)
    assert np.array_equal(run(cfg_of(grayscale={"rate": 1.0}), gx, gy), gx.numpy())


def test_erasing_many_boxes_and_colour_fill():
    white = tf.constant(np.full((32, 40, 40, 3), 255, np.uint8))
    one = run(cfg_of(erasing={"rate": 1.0, "min_area": 0.01, "max_area": 0.02, "fill": "zero"}), white)
    many = run(cfg_of(erasing={"rate": 1.0, "min_area": 0.01, "max_area": 0.02, "fill": "zero", "max_count": 10}),
               white)
    frac = lambda e: (e[..., 0] == 0).reshape(len(e), -1).mean(1)  # noqa: E731
    assert frac(many).mean() > 2.5 * frac(one).mean()
    assert frac(many).max() <= 10 * 0.02 + 0.02
    # box 0 keeps the single-box draws: a multi-box image erases (at least) what the one-box image erased
    assert ((one == 0) <= (many == 0)).all()
    col = run(cfg_of(erasing={"rate": 1.0, "min_area": 0.2, "max_area": 0.3, "fill": "colour"}), white)
    for img in col:
        box = (img != 255).any(-1)
        assert box.any()
        assert len(np.unique(img[box].reshape(-1, 3), axis=0)) == 1  # one solid colour per box
    from mcuzoo.errors import ConfigError as CE
    with pytest.raises(CE, match="max_count"):
        load_config(None, ["augmentation.erasing.max_count=0"])


def test_fill_mode_per_kind_and_translation_per_axis():
    from mcuzoo.data.augment import _warp_groups

    cfg = cfg_of(rotation={"rate": 1.0}, zoom={"rate": 1.0}, shear={"rate": 1.0, "fill_mode": "wrap"},
                 translation={"rate": 1.0}, fill_mode="reflect")
    assert _warp_groups(cfg) == [("rotation", "translation", "zoom"), ("shear",)]
    assert _warp_groups(cfg_of(rotation={"rate": 1.0}, shear={"rate": 1.0})) == [("rotation", "shear")]
    # a wrap fill brings the other edge's pixels; constant brings zeros
    x = np.zeros((4, 16, 16, 1), np.uint8)
    x[:, :, :8] = 255
    xt = tf.constant(x)
    tr = {"rate": 1.0, "max_fraction": 0.4}
    wrapped = run(cfg_of(translation={**tr, "fill_mode": "wrap"}), xt)
    zeros = run(cfg_of(translation={**tr, "fill_mode": "constant"}, fill_mode="wrap"), xt)
    assert wrapped.astype(int).sum() > zeros.astype(int).sum()
    assert abs(wrapped.astype(int).sum() / x.astype(int).sum() - 1) < 0.2  # wrapping keeps the mass
    # translation with its own vertical range: y only moves when max_fraction_y allows it
    rows = np.zeros((8, 20, 20, 1), np.uint8)
    rows[:, 10] = 255
    only_x = run(cfg_of(translation={"rate": 1.0, "max_fraction": 0.3, "max_fraction_y": 0.001}), tf.constant(rows))
    assert (only_x[:, 10] > 0).any(1).all() and only_x[:, :9].max() == 0 and only_x[:, 12:].max() == 0


def test_noise_range():
    flat = tf.constant(np.full((16, 32, 32, 1), 128, np.uint8))
    n = run(cfg_of(noise={"rate": 1.0, "min_stddev": 10.0, "max_stddev": 12.0}), flat).astype(float)
    stds = n.reshape(16, -1).std(1)
    assert (stds > 8).all() and (stds < 14).all()
    from mcuzoo.errors import ConfigError as CE
    with pytest.raises(CE, match="min_stddev must not exceed max_stddev"):
        load_config(None, ["augmentation.noise.min_stddev=5", "augmentation.noise.max_stddev=1"])


def test_every_kind_on_grayscale_and_tiny_images():
    cfg = cfg_of(**{k: {"rate": 1.0} for k in KINDS})
    for shape in ((4, 28, 28, 1), (2, 1, 1, 3), (3, 2, 5, 1)):
        x = tf.constant(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
        out = run(cfg, x)
        assert out.shape == shape


# ---------------------------------------------------------------------------
# mcuzoo data info / preview


@pytest.fixture
def data_parser():
    from mcuzoo.data.cli import register_cli

    p = argparse.ArgumentParser(prog="mcuzoo")
    sub = p.add_subparsers(dest="verb")
    register_cli(sub)
    return p


def test_data_cli(tmp_path, data_parser, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {name: st_mnist_v1, input_shape: [16, 16, 3]}\n"
        f"dataset: {{name: folder, path: '{tmp_path / 'imgs'}', test_split: 0.2}}\n"
        "augmentation: {rotation: {rate: 0.5}, erasing: {rate: 0.5}}\n")
    args = data_parser.parse_args(["data", "info", str(cfg), "preprocessing.aspect=pad"])
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "dog" in out and "2 classes" in out and "rotation, erasing" in out
    assert "20x30" in out and "24x30" in out and "pad" in out

    png = tmp_path / "preview.png"
    args = data_parser.parse_args(["data", "preview", str(cfg), "--out", str(png), "--n", "6"])
    assert args.fn(args) == 0
    im = Image.open(png)
    assert im.format == "PNG" and im.size[0] > 200
    args = data_parser.parse_args(["data", "preview", str(cfg), "augmentation.rotation.rate=0",
                                   "augmentation.erasing.rate=0", "--out", str(tmp_path / "plain.png")])
    assert args.fn(args) == 0 and (tmp_path / "plain.png").is_file()
    with pytest.raises(SystemExit):
        data_parser.parse_args(["data"])


# ---------------------------------------------------------------------------
# preprocessing.aspect=emnist: glyphs framed as NIST's EMNIST


def _glyph(h=28, w=28, box=(10, 14, 12, 15)):
    """A dark frame with a small bright 'glyph' (a filled rectangle r0:r1, c0:c1)."""
    img = np.zeros((h, w, 1), np.uint8)
    r0, r1, c0, c1 = box
    img[r0:r1, c0:c1] = 255
    return img


def test_emnist_framing_fills_the_frame_with_a_border_and_is_stable():
    from mcuzoo.data.core import EMNIST_BORDER, resize_images

    small = np.stack([_glyph(box=(3, 9, 4, 8)), _glyph(box=(15, 21, 16, 20)), _glyph(box=(2, 26, 10, 14))])
    out = resize_images(small, (28, 28, 1), "bilinear", "emnist")
    assert out.shape == (3, 28, 28, 1)
    for img in out[..., 0]:
        ink = np.argwhere(img > 127)  # half-level: bilinear upsampling blurs the edge by a source pixel
        (r0, c0), (r1, c1) = ink.min(0), ink.max(0)
        assert max(r1 - r0, c1 - c0) + 1 >= 28 - 2 * EMNIST_BORDER - 1      # the long side fills the square
        assert min(r0, c0) >= EMNIST_BORDER - 1 and max(r1, c1) <= 27 - EMNIST_BORDER + 1
        assert abs((r0 + r1) / 2 - 13.5) <= 1 and abs((c0 + c1) / 2 - 13.5) <= 1  # centred
    # the same glyph anywhere in the frame comes out the same
    assert np.abs(out[0].astype(int) - out[1].astype(int)).max() <= 1
    # framing a framed glyph gives it back
    again = resize_images(out, (28, 28, 1), "bilinear", "emnist")
    assert np.abs(again.astype(int) - out.astype(int)).mean() < 3
    # no ink: only resized; other sizes and RGB work
    assert not resize_images(np.zeros((1, 28, 28, 1), np.uint8), (28, 28, 1), aspect="emnist").any()
    rgb = resize_images(np.repeat(small, 3, -1), (32, 32, 3), "nearest", "emnist")
    assert rgb.shape == (3, 32, 32, 3)


def test_emnist_framing_in_a_dataset_and_in_predict(tmp_path):
    from PIL import Image

    from mcuzoo.config import DatasetConfig
    from mcuzoo.data.core import EMNIST_BORDER
    from mcuzoo.data.loading import load_dataset
    from mcuzoo.predict import load_image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            g = _glyph(box=(2 + i, 8 + i, 3, 7 + (cls == "b") * 4))
            Image.fromarray(g[..., 0]).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset(DatasetConfig(name="folder", path=str(tmp_path), validation_split=0.25),
                      (28, 28, 1), "bilinear", aspect="emnist")
    imgs = np.concatenate([ds.train.to_numpy()[0], ds.val.to_numpy()[0]])
    assert len(imgs) == 8
    for img in imgs:  # each glyph (4-8 pixels across as stored) now spans the frame inside its border
        ink = np.argwhere(img[..., 0] > 25)
        assert (ink.max(0) - ink.min(0)).max() + 1 >= 28 - 2 * EMNIST_BORDER - 2
    one = load_image(tmp_path / "a" / "0.png", (28, 28, 1), "bilinear", "emnist")
    ink = np.argwhere(one[..., 0] > 25)
    assert ink.min(0)[0] <= 3 and ink.max(0)[0] >= 24  # predict frames like training
