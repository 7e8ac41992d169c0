"""Bad data: each problem is a one-line DataError naming the file, or (dataset.skip_bad_files) skipped and listed."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mcuzoo.config import DatasetConfig
from mcuzoo.data import Split, load_dataset, load_eval_split
from mcuzoo.data.images import index_files, inspect_file, jpeg_structure_error
from mcuzoo.errors import DataError


def good_image(path: Path, seed: int = 0, size=(24, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path, quality=90)


def jpeg_bytes(seed: int = 0, size=(48, 64)) -> bytes:
    buf = io.BytesIO()
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    img = np.dstack([xx * 4 % 256, yy * 5 % 256, (xx * yy + seed) % 256]).astype(np.uint8)
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def bad_file(path: Path, kind: str) -> str:
    """Write a bad image file of ``kind``; return a fragment of the error expected for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated_jpeg":
        data = jpeg_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "is truncated"
    if kind == "empty_png":
        path.write_bytes(b"")
        return "is empty (0 bytes)"
    if kind == "text_jpg":
        path.write_text("this is not an image, just text with an image extension\n" * 5)
        return "is not an image"
    if kind == "corrupt_png":
        data = bytearray(png_bytes())
        mid = len(data) // 2
        data[mid:mid + 40] = bytes(40)
        path.write_bytes(bytes(data))
        return "is corrupt"
    if kind == "bad_marker_jpeg":
        data = bytearray(jpeg_bytes())
        sos = data.index(b"\xff\xda")
        data[sos + 40:sos + 42] = b"\xff\x31"  # a marker libjpeg does not know, inside the scan
        path.write_bytes(bytes(data))
        return "unknown JPEG marker 0x31"
    raise ValueError(kind)


BAD = {"truncated_jpeg": "a/cut.jpg", "empty_png": "b/empty.png", "text_jpg": "c/notes.jpg",
       "corrupt_png": "a/broken.png", "bad_marker_jpeg": "b/marker.jpg"}


def good_folders(root: Path, classes=("a", "b", "c"), n=4) -> None:
    for ci, cls in enumerate(classes):
        for i in range(n):
            good_image(root / cls / f"ok{i}.jpg", seed=10 * ci + i)


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------
# image files


@pytest.mark.parametrize("kind", list(BAD))
def test_each_bad_image_is_named(tmp_path, kind):
    good_folders(tmp_path)
    expected = bad_file(tmp_path / BAD[kind], kind)
    with pytest.raises(DataError) as err:
        load_dataset(DatasetConfig(name="folder", path=str(tmp_path)), (16, 16, 3))
    msg = one_line(err)
    assert str(tmp_path / BAD[kind]) in msg and expected in msg and "skip_bad_files" in msg
    assert inspect_file(str(tmp_path / BAD[kind])).error is not None


def test_skip_bad_files_counts_and_lists(tmp_path):
    good_folders(tmp_path)
    for kind, rel in BAD.items():
        bad_file(tmp_path / rel, kind)
    cfg = DatasetConfig(name="folder", path=str(tmp_path), test_split=0.25)
    with pytest.raises(DataError, match=r"\(and 4 more bad files\)"):
        load_dataset(cfg, (16, 16, 3))
    ds = load_dataset(cfg.model_copy(update={"skip_bad_files": True}), (16, 16, 3))
    assert ds.class_names == ["a", "b", "c"]
    assert len(ds.skipped_files) == 5
    assert sorted(line.split(": ")[0] for line in ds.skipped_files) == sorted(str(tmp_path / r) for r in BAD.values())
    assert all(": " in line and line.split(": ", 1)[1] for line in ds.skipped_files)
    assert any(n.startswith("skipped 5 bad files") for n in ds.notes)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 12
    # every split decodes to the end: nothing bad is left for the middle of an epoch
    for split in (ds.train, ds.val, ds.test):
        x, y = split.to_numpy()
        assert x.shape == (len(split), 16, 16, 3)
        for bx, by in split.tf_dataset(4, shuffle=True, seed=1):
            assert bx.shape[0] == by.shape[0]


def test_class_left_without_images_is_an_error_even_when_skipping(tmp_path):
    good_folders(tmp_path, classes=("a", "b"))
    bad_file(tmp_path / "c" / "x.jpg", "truncated_jpeg")
    bad_file(tmp_path / "c" / "y.png", "empty_png")
    cfg = DatasetConfig(name="folder", path=str(tmp_path), skip_bad_files=True)
    with pytest.raises(DataError) as err:
        load_dataset(cfg, (16, 16, 3))
    msg = one_line(err)
    assert "1 of 3 classes have no training images (2 bad files were skipped): c" in msg


def test_empty_class_folder(tmp_path):
    good_folders(tmp_path, classes=("a", "b"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    cfg = DatasetConfig(name="folder", path=str(tmp_path))
    with pytest.raises(DataError) as err:
        load_dataset(cfg, (16, 16, 3))
    assert f"class folder {tmp_path / 'empty'} holds no images" in one_line(err)
    ds = load_dataset(cfg.model_copy(update={"skip_bad_files": True}), (16, 16, 3))
    assert ds.class_names == ["a", "b"]  # left out, so never reported as a class
    assert ds.skipped_files == [f"{tmp_path / 'empty'}: class folder holds no images (left out)"]
    assert any("holds no images: left out" in n for n in ds.notes)


def test_test_folder_classes(tmp_path):
    good_folders(tmp_path / "train", classes=("a", "b"))
    good_folders(tmp_path / "test", classes=("a", "b", "zebra"), n=1)
    cfg = DatasetConfig(name="folder", path=str(tmp_path / "train"), test_path=str(tmp_path / "test"))
    # a test class that train does not have: always an error
    for skip in (False, True):
        with pytest.raises(DataError) as err:
            load_dataset(cfg.model_copy(update={"skip_bad_files": skip}), (16, 16, 3))
        assert f"test folder {tmp_path / 'test'} has classes not in the training folder: zebra" in one_line(err)
    # a train class missing from test: an error, or a note when skipping
    import shutil

    shutil.rmtree(tmp_path / "test" / "zebra")
    shutil.rmtree(tmp_path / "test" / "b")
    with pytest.raises(DataError) as err:
        load_dataset(cfg, (16, 16, 3))
    assert f"test split (folder {tmp_path / 'test'}) has no images of 1 of 2 classes: b" in one_line(err)
    ds = load_dataset(cfg.model_copy(update={"skip_bad_files": True}), (16, 16, 3))
    assert ds.test.labels.tolist() == [0] and any("no images of 1 of 2 classes: b" in n for n in ds.notes)
    # an empty class folder in the test set
    (tmp_path / "test" / "b").mkdir()
    with pytest.raises(DataError, match=f"class folder {tmp_path / 'test' / 'b'} holds no images"):
        load_dataset(cfg, (16, 16, 3))


def test_hand_built_split_checks_files_before_the_first_batch(tmp_path):
    good_image(tmp_path / "ok.jpg")
    bad_file(tmp_path / "bad.jpg", "truncated_jpeg")
    split = Split([0, 1], None, [str(tmp_path / "ok.jpg"), str(tmp_path / "bad.jpg")], (8, 8, 3))
    with pytest.raises(DataError, match=f"{tmp_path / 'bad.jpg'} is truncated"):
        split.tf_dataset(2)


def test_eval_data_bad_files(tmp_path):
    good_folders(tmp_path, classes=("a", "b"), n=2)
    bad_file(tmp_path / "a" / "zero.png", "empty_png")
    with pytest.raises(DataError, match=f"{tmp_path / 'a' / 'zero.png'} is empty"):
        load_eval_split(str(tmp_path), (8, 8, 3))
    split, names = load_eval_split(str(tmp_path), (8, 8, 3), skip_bad_files=True)
    assert len(split) == 4 and names == ["a", "b"]


def test_jpeg_structure_check():
    data = jpeg_bytes(1)
    assert jpeg_structure_error(data) is None
    assert jpeg_structure_error(data + b"trailing bytes after the end marker") is None
    # extraneous bytes between segments: libjpeg skips them with a warning
    app = data.index(b"\xff\xdb")
    assert jpeg_structure_error(data[:app] + b"\x00\x00junk" + data[app:]) is None
    for cut in (3, 10, len(data) // 3, len(data) - 2):
        assert jpeg_structure_error(data[:cut]) is not None
    assert "start marker" in jpeg_structure_error(b"\x89PNG....")
    bad_len = bytearray(data)
    bad_len[app + 2:app + 4] = b"\xff\xf0"
    assert "runs past the end" in jpeg_structure_error(bytes(bad_len))


def test_index_files_many_in_a_thread_pool(tmp_path):
    paths = []
    for i in range(150):
        p = tmp_path / f"{i:03d}.jpg"
        if i % 50 == 7:
            bad_file(p, "text_jpg")
        else:
            p.write_bytes(jpeg_bytes(i, (8, 8)))
        paths.append(str(p))
    idx = index_files(paths, skip_bad=True)
    assert len(idx.paths) == 147 and idx.kept.tolist() == [i for i in range(150) if i % 50 != 7]
    assert idx.sizes.tolist() == [[8, 8]] * 147 and len(idx.skipped) == 3
    with pytest.raises(DataError, match=r"007.jpg is not an image .*\(and 2 more bad files\)"):
        index_files(paths)


# ---------------------------------------------------------------------------
# EMNIST and Food-101 files


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    array = np.asarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.mark.parametrize("problem", ["images_magic", "labels_magic", "count"])
def test_idx_problems(tmp_path, problem):
    img = tmp_path / "emnist-byclass-train-images-idx3-ubyte.gz"
    lab = tmp_path / "emnist-byclass-train-labels-idx1-ubyte.gz"
    write_idx(img, np.zeros((36, 28, 28)), 0x803)
    write_idx(lab, np.arange(36), 0x801)
    if problem == "images_magic":
        write_idx(img, np.zeros((36, 28, 28)), 0x1234)
        named, match = img, "has magic 0x00001234, expected 0x00000803"
    elif problem == "labels_magic":
        write_idx(lab, np.arange(36), 0x803)
        named, match = lab, "has magic 0x00000803, expected 0x00000801"
    else:
        write_idx(lab, np.arange(30), 0x801)
        named, match = lab, "count mismatch: .* has 36 images, .* has 30 labels"
    with pytest.raises(DataError, match=match) as err:
        load_dataset(DatasetConfig(name="emnist_byclass", path=str(tmp_path)), (28, 28, 1))
    assert named.name in one_line(err)


def write_food(root: Path, classes=("apple_pie", "baklava"), n=4) -> None:
    lines = []
    for ci, cls in enumerate(classes):
        for i in range(n):
            good_image(root / "images" / cls / f"{100 + i}.jpg", seed=ci * 10 + i)
            lines.append(f"{cls}/{100 + i}")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "meta" / "train.txt").write_text("\n".join(lines) + "\n")


def test_food101_problems(tmp_path):
    write_food(tmp_path)
    cfg = DatasetConfig(name="food101", path=str(tmp_path))
    (tmp_path / "meta" / "train.txt").unlink()
    with pytest.raises(DataError) as err:
        load_dataset(cfg, (16, 16, 3))
    assert f"meta file not found: {tmp_path / 'meta' / 'train.txt'}" in one_line(err)
    write_food(tmp_path)
    (tmp_path / "images" / "baklava" / "101.jpg").unlink()
    bad_file(tmp_path / "images" / "apple_pie" / "102.jpg", "truncated_jpeg")
    with pytest.raises(DataError, match="image not found: .*baklava/101.jpg"):
        load_dataset(cfg, (16, 16, 3))
    ds = load_dataset(cfg.model_copy(update={"skip_bad_files": True}), (16, 16, 3))
    assert len(ds.train) + len(ds.val) == 6 and len(ds.skipped_files) == 2
    assert any("baklava/101.jpg: file not found" in s for s in ds.skipped_files)
    assert any("apple_pie/102.jpg: is truncated" in s for s in ds.skipped_files)
    import shutil

    shutil.rmtree(tmp_path / "meta")
    with pytest.raises(DataError, match="meta folder not found"):
        load_dataset(cfg, (16, 16, 3))


def _emnist_files(root: Path, rows=28, cols=28, n=36, mapping: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    img = root / "emnist-byclass-train-images-idx3-ubyte.gz"
    with gzip.open(img, "wb") as f:
        f.write((0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, rows, cols)))
        f.write(bytes(min(n * rows * cols, 10_000)))
    write_idx(root / "emnist-byclass-train-labels-idx1-ubyte.gz", np.arange(n) % 36, 0x801)
    if mapping is not None:
        (root / "emnist-byclass-mapping.txt").write_text(mapping)


@pytest.mark.parametrize("rows,cols", [(0, 28), (28, 0), (65535, 65535)])
def test_idx_header_with_impossible_image_size(tmp_path, rows, cols):
    _emnist_files(tmp_path, rows, cols)
    with pytest.raises(DataError, match=f"has images of {rows}x{cols} pixels") as err:
        load_eval_split(str(tmp_path), (28, 28, 1))
    assert "emnist-byclass-train-images" in one_line(err)


@pytest.mark.parametrize("line", ["0 1114112", "3 99999999999999999999", "1 -5"])
def test_emnist_mapping_code_that_is_no_character(tmp_path, line):
    _emnist_files(tmp_path, mapping=line + "\n")
    with pytest.raises(DataError, match="emnist-byclass-mapping.txt maps label .* which is no character code"):
        load_eval_split(str(tmp_path), (28, 28, 1))


def test_gif_and_bmp_that_tf_refuses_go_through_pil(tmp_path):
    good_folders(tmp_path, classes=("a", "b"), n=1)
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 5, 3), 90, np.uint8)).save(buf, format="BMP")
    (tmp_path / "a" / "trailing.bmp").write_bytes(buf.getvalue() + b"\x00" * 16)  # TF's BMP decoder refuses this
    Image.fromarray(np.full((6, 5), 7, np.uint8)).convert("P").save(tmp_path / "b" / "x.gif")
    split, _ = load_eval_split(str(tmp_path), (6, 5, 3))
    assert split.decode[split.paths.index(str(tmp_path / "a" / "trailing.bmp"))] == 0
    x, _ = split.to_numpy()
    assert x.shape == (4, 6, 5, 3) and (x[split.paths.index(str(tmp_path / "a" / "trailing.bmp"))] == 90).all()


def test_decode_failure_while_iterating_is_a_data_error(tmp_path):
    """A PNG whose deflate stream is broken under correct CRCs: the up-front check inflates the pixel data
    and refuses it; a split that was checked before the file changed meets TF's refusal, and numpy_batches /
    to_numpy turn that into a one-line DataError naming the file."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    crafted = tmp_path / "crafted.png"
    crafted.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
                        + chunk(b"IDAT", b"\x78\x9c" + b"\xff" * 30) + chunk(b"IEND", b""))
    assert "is corrupt" in inspect_file(str(crafted)).error
    split = Split([0], None, [str(crafted)], (8, 8, 3), decode=np.ones(1, np.int8), sizes=np.array([[8, 8]]))
    with pytest.raises(DataError, match="crafted.png") as err:
        split.to_numpy()
    one_line(err)
