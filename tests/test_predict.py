"""``mcuzoo predict``: top-k classes of image files of every kind, with .keras and .tflite models."""
import argparse
import json
import os

import numpy as np
import pytest

from mcuzoo import rundir
from mcuzoo.errors import McuzooError
from mcuzoo.predict import collect_images, load_image, predict, register_cli

CLASSES = [str(d) for d in range(10)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An (untrained) ST MNIST v1 as .keras and int8 .tflite, with model_info.json beside them."""
    import keras

    from mcuzoo.evaluate import ModelInfo
    from mcuzoo.models import build_model
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.tflite import quantize_tflite

    d = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    model = build_model("st_mnist_v1", (28, 28, 1), len(CLASSES))
    keras_path = d / rundir.FLOAT_MODEL
    model.save(keras_path)
    calib = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    tflite_path = d / rundir.INT8_TFLITE
    quantize_tflite(model, Calibration(calib, 1 / 127.5, -1.0), tflite_path)
    info = ModelInfo(class_names=CLASSES, input_shape=(28, 28, 1), rescale=1 / 127.5, offset=-1.0, model="st_mnist_v1")
    rundir.write_json(d / rundir.MODEL_INFO, info.to_json())
    return {"keras": keras_path, "tflite": tflite_path, "dir": d}


def glyph(ch: str, size: int = 28):
    """A white character on black, as a Pillow 'L' image."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts/ttf/DejaVuSans-Bold.ttf"), int(size * 0.8))
    im = Image.new("L", (size, size), 0)
    ImageDraw.Draw(im).text((size / 2, size / 2), ch, fill=255, font=font, anchor="mm")
    return im


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """One image per awkward format, plus a corrupt file and a non-image, in a folder tree."""
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    (d / "sub").mkdir()
    a = glyph("A")
    a.save(d / "a.png")
    glyph("7", 64).save(d / "sub" / "seven_64.png")                                # resized to 28x28
    Image.fromarray((np.asarray(glyph("B")).astype(np.uint16) * 257)).save(d / "b16.png")  # 16-bit grey
    glyph("C").convert("P").save(d / "c_palette.png")                               # palette
    rgba = glyph("D").convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "d_rgba.png")                                                     # alpha
    glyph("E").convert("CMYK").save(d / "e_cmyk.jpg")                               # CMYK JPEG
    glyph("F").convert("RGB").save(d / "f_rgb.jpg", quality=95)
    return d


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (d / "notes.txt").write_text("not an image")
    return d


def test_every_image_mode_decodes_to_the_model_input(images):
    a = load_image(images / "a.png", (28, 28, 1))
    assert a.shape == (28, 28, 1) and a.dtype == np.uint8 and a.max() > 200
    for name in ("b16.png", "c_palette.png", "d_rgba.png", "e_cmyk.jpg", "f_rgb.jpg", "sub/seven_64.png"):
        x = load_image(images / name, (28, 28, 1))
        assert x.shape == (28, 28, 1) and x.dtype == np.uint8, name
        assert x.max() > 180 and x.min() < 60, name  # the glyph survives: bright strokes on a dark ground
    # 16-bit grey is scaled, not clipped: the same pixels as the 8-bit glyph
    b16, b8 = load_image(images / "b16.png", (28, 28, 1)), np.asarray(glyph("B"))[..., None]
    assert np.abs(b16.astype(int) - b8).max() <= 1
    rgb = load_image(images / "e_cmyk.jpg", (16, 16, 3))
    assert rgb.shape == (16, 16, 3)


def test_exif_rotation_is_applied(tmp_path):
    from PIL import Image

    im = Image.new("L", (40, 20), 0)
    im.paste(255, (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed: 20 wide, 40 high, white on top
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    x = load_image(tmp_path / "rot.jpg", (40, 20, 1))[..., 0]
    assert x[:20].mean() > 200 and x[20:].mean() < 50


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_predict_top_k(models, images, kind):
    res = predict(models[kind], [str(images)], top_k=len(CLASSES))
    files = [os.path.relpath(p.file, images) for p in res]
    assert files == sorted(files) and len(files) == 7  # recursive, every format
    assert res.class_names_source == "model_info.json" and not res.notes and not res.skipped
    for p in res:
        assert len(p.labels) == len(CLASSES) and set(p.labels) == set(CLASSES)
        assert p.scores == sorted(p.scores, reverse=True)
        assert sum(p.scores) == pytest.approx(1.0, abs=0.02)
        assert all(CLASSES[i] == lab for i, lab in zip(p.indices, p.labels))
    top3 = predict(models[kind], [str(images / "a.png")], top_k=3)
    assert len(top3) == 1 and len(top3[0].labels) == 3
    assert top3[0].labels == res[files.index("a.png")].labels[:3]


def test_keras_and_tflite_agree(models, images):
    k = predict(models["keras"], [str(images / "a.png")], top_k=len(CLASSES))[0]
    t = predict(models["tflite"], [str(images / "a.png")], top_k=len(CLASSES))[0]
    pk, pt = dict(k.top), dict(t.top)
    assert max(abs(pk[c] - pt[c]) for c in CLASSES) < 0.05


def test_without_model_info_classes_are_indices(models, tmp_path, images):
    import shutil

    lone = tmp_path / "m.tflite"
    shutil.copy(models["tflite"], lone)
    res = predict(lone, [str(images / "a.png")], top_k=2)
    assert res.class_names_source == "indices" and "model_info.json" in res.notes[0]
    assert all(lab == str(i) for lab, i in zip(res[0].labels, res[0].indices))


def test_corrupt_and_non_image_files_are_one_line_errors(models, images, corrupt):
    with pytest.raises(McuzooError) as e:
        predict(models["tflite"], [str(images / "a.png"), str(corrupt / "broken.png")])
    assert "broken.png" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(McuzooError) as e:
        predict(models["tflite"], [str(corrupt / "notes.txt")])
    assert "notes.txt" in str(e.value)
    with pytest.raises(McuzooError) as e:
        predict(models["tflite"], [str(corrupt / "missing.png")])
    assert "missing.png" in str(e.value)
    with pytest.raises(McuzooError):
        collect_images([str(models["dir"])])  # a folder with no images
    res = predict(models["tflite"], [str(images / "a.png"), str(corrupt)], skip_bad=True)
    assert len(res) == 1 and [os.path.basename(f) for f, _ in res.skipped] == ["broken.png"]


def test_predict_cli_json_and_table(models, images, corrupt, capsys):
    parser = argparse.ArgumentParser(prog="mcuzoo")
    register_cli(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["predict", str(models["tflite"]), str(images / "a.png"), str(images / "sub"),
                              "--top-k", "3", "--json"])
    assert args.fn(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [len(p["top"]) for p in out["predictions"]] == [3, 3]
    assert out["predictions"][0]["top"][0]["class"] in CLASSES
    args = parser.parse_args(["predict", str(models["tflite"]), str(images / "a.png"), str(corrupt), "--skip-bad"])
    assert args.fn(args) == 0
    captured = capsys.readouterr()
    assert "a.png" in captured.out and "%" in captured.out
    assert "skipped 1" in captured.err and "broken.png" in captured.err
