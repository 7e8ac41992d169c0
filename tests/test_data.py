"""Dataset loaders: built-in generators, EMNIST IDX, class folders, Food-101, splits, tf.data pipelines."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mcuzoo.config import DatasetConfig
from mcuzoo.data import Dataset, Split, load_dataset, load_eval_split
from mcuzoo.data.splits import cap_per_class, stratified_split
from mcuzoo.errors import DataError

from conftest import shared_dataset


# ---------------------------------------------------------------------------
# helpers writing the real layouts


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True, raw: bytes | None = None) -> None:
    array = np.asarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = raw if raw is not None else header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def upright_images(n: int, seed: int = 0) -> np.ndarray:
    """Non-symmetric 28x28 images: a bar along the top rows plus a blob at the left edge."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 20, (n, 28, 28), dtype=np.uint8)
    x[:, 2:5, 4:24] = 250
    x[:, 10:20, 1:4] = 200
    return x


def write_emnist(root: Path, labels: np.ndarray, images: np.ndarray | None = None, split: str = "train",
                 mapping: bool = True) -> np.ndarray:
    """Write EMNIST byclass files (images stored transposed, like the real ones); returns the upright images."""
    root.mkdir(parents=True, exist_ok=True)
    up = upright_images(len(labels)) if images is None else images
    write_idx(root / f"emnist-byclass-{split}-images-idx3-ubyte.gz", up.transpose(0, 2, 1), 0x803)
    write_idx(root / f"emnist-byclass-{split}-labels-idx1-ubyte.gz", np.asarray(labels), 0x801)
    if mapping:
        codes = list(range(48, 58)) + list(range(65, 91)) + list(range(97, 123))
        (root / "emnist-byclass-mapping.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(codes)))
    return up


def write_image(path: Path, size=(20, 16), mode="RGB", seed=0) -> None:
    rng = np.random.default_rng(seed)
    h, w = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def write_class_folders(root: Path, per_class: dict[str, int], ext: str = "png", mode: str = "RGB") -> None:
    for ci, (cls, n) in enumerate(per_class.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / cls / f"img{i:03d}.{ext}", size=(18 + i % 5, 22 + ci), mode=mode, seed=ci * 100 + i)


def write_food101(root: Path, classes=("apple_pie", "baklava", "churros"), n_train=6, n_test=2) -> None:
    lines = {"train": [], "test": []}
    for ci, cls in enumerate(classes):
        for i in range(n_train + n_test):
            iid = 1000 + 37 * i + ci
            write_image(root / "images" / cls / f"{iid}.jpg", size=(30, 40), seed=iid)
            lines["train" if i < n_train else "test"].append(f"{cls}/{iid}")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "meta" / "train.txt").write_text("\n".join(lines["train"]) + "\n")
    if n_test:
        (root / "meta" / "test.txt").write_text("\n".join(lines["test"]) + "\n")


def per_class(split: Split, n: int) -> np.ndarray:
    return np.bincount(split.labels, minlength=n)


def check_batch(split: Split, shape, batch=4):
    x, y = next(iter(split.tf_dataset(batch)))
    assert x.dtype.name == "uint8" and y.dtype.name == "int32"
    assert tuple(x.shape) == (min(batch, len(split)),) + tuple(shape)
    return x.numpy(), y.numpy()


# ---------------------------------------------------------------------------
# splits


def test_stratified_split_and_cap():
    labels = np.repeat(np.arange(4), [10, 20, 3, 1])
    keep, held = stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(labels)
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 4, 1, 0]
    keep2, held2 = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(held, held2) and np.array_equal(keep, keep2)
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=4)[1])
    idx = cap_per_class(labels, 5, seed=0)
    assert np.bincount(labels[idx], minlength=4).tolist() == [5, 5, 3, 1]
    assert np.array_equal(idx, cap_per_class(labels, 5, seed=0))
    assert len(cap_per_class(labels, None, seed=0)) == len(labels)


# ---------------------------------------------------------------------------
# built-in datasets


def test_glyphs36_deterministic_and_stratified():
    cfg = DatasetConfig(name="glyphs36", samples_per_class=5, validation_split=0.2, seed=1)
    a = load_dataset(cfg, (28, 28, 1))
    b = load_dataset(cfg, (28, 28, 1))
    assert isinstance(a, Dataset) and a.class_names == [str(d) for d in range(10)] + [chr(c) for c in range(65, 91)]
    for s1, s2 in [(a.train, b.train), (a.val, b.val), (a.test, b.test)]:
        assert s1.images.dtype == np.uint8 and s1.images.shape[1:] == (28, 28, 1)
        assert s1.images.tobytes() == s2.images.tobytes() and np.array_equal(s1.labels, s2.labels)
    assert per_class(a.val, 36).tolist() == [1] * 36 and per_class(a.train, 36).tolist() == [4] * 36
    assert per_class(a.test, 36).tolist() == [20] * 36  # at least 20 per class
    # white ink on black, not blank
    assert np.median(a.train.images) < 40 and (a.train.images.reshape(len(a.train), -1).max(1) > 100).all()
    c = load_dataset(cfg.model_copy(update={"seed": 2}), (28, 28, 1))
    assert c.train.images.tobytes() != a.train.images.tobytes()
    # the test set comes from another stream than train
    assert not any((a.test.images[:5, None] == a.train.images[None]).all(axis=(2, 3, 4)).any(1))


def test_glyphs36_other_shape_and_cap():
    cfg = DatasetConfig(name="glyphs36", samples_per_class=50, max_per_class=3, validation_split=0.3)
    ds = load_dataset(cfg, (20, 24, 3))
    assert ds.train.images.shape[1:] == (20, 24, 3)
    assert (ds.train.images[..., 0] == ds.train.images[..., 2]).all()
    assert len(ds.train) + len(ds.val) == 36 * 3
    assert any("max_per_class" in n for n in ds.notes)


def test_shapes_deterministic():
    cfg = DatasetConfig(name="shapes", samples_per_class=10, seed=5)
    a = load_dataset(cfg, (24, 24, 3))
    b = load_dataset(cfg, (24, 24, 3))
    assert a.class_names == ["circle", "square", "triangle", "star", "cross", "ring"]
    assert a.train.images.tobytes() == b.train.images.tobytes()
    assert a.test.images.tobytes() == b.test.images.tobytes()
    assert per_class(a.val, 6).tolist() == [1] * 6 and per_class(a.test, 6).tolist() == [20] * 6
    assert a.train.images.std() > 30  # coloured, not flat
    g = load_dataset(cfg, (16, 16, 1))
    assert g.train.images.shape[1:] == (16, 16, 1)


# ---------------------------------------------------------------------------
# EMNIST


def test_emnist_transpose_labels_and_splits(tmp_path):
    labels = np.concatenate([np.array([0, 1, 35, 36, 61, 10, 0, 1, 2, 2, 3, 3, 40, 0, 1, 35] * 3), np.arange(36)])
    up = write_emnist(tmp_path, labels)
    cfg = DatasetConfig(name="emnist_byclass", path=str(tmp_path), validation_split=0.2)
    ds = load_dataset(cfg, (28, 28, 1))
    keep = labels < 36
    assert len(ds.train) + len(ds.val) == keep.sum()
    assert ds.test is None and any("evaluation will use the validation split" in n for n in ds.notes)
    assert ds.class_names[:3] == ["0", "1", "2"] and ds.class_names[35] == "Z" and len(ds.class_names) == 36
    # every image comes back upright (the file holds it transposed)
    x, _ = load_eval_split(str(tmp_path), (28, 28, 1))[0].numpy_batches(100).__next__()
    assert np.array_equal(x[..., 0], up[keep])
    assert x[0, 3, 22, 0] == 250 and x[0, 22, 3, 0] < 20  # the bar runs along the top, not down the left
    assert set(np.unique(ds.train.labels)) <= set(range(36))

    held = load_dataset(cfg.model_copy(update={"test_split": 0.3}), (28, 28, 1))
    assert held.test is not None and len(held.test) + len(held.train) + len(held.val) == keep.sum()
    assert any("test_split=0.3 held out" in n for n in held.notes)
    rgb = load_dataset(cfg, (32, 32, 3))
    assert rgb.train.images.shape[1:] == (32, 32, 3)


def test_emnist_test_files_and_default_names(tmp_path):
    write_emnist(tmp_path, np.arange(36).repeat(2), mapping=False)
    write_emnist(tmp_path, np.array([5, 6, 7, 50]), split="test", mapping=False)
    cfg = DatasetConfig(name="emnist_byclass", path=str(tmp_path))
    # a test file without most classes is an error, or a note with skip_bad_files
    with pytest.raises(DataError, match=r"test split \(.*emnist-byclass-test-images.*\) has no images of 33 of 36 classes"):
        load_dataset(cfg, (28, 28, 1))
    ds = load_dataset(cfg.model_copy(update={"skip_bad_files": True}), (28, 28, 1))
    assert ds.class_names[10] == "A" and ds.test is not None and sorted(ds.test.labels.tolist()) == [5, 6, 7]
    assert any("has no images of 33 of 36" in n for n in ds.notes)
    split, names = load_eval_split(str(tmp_path), (28, 28, 1))
    assert len(split) == 3 and names[10] == "A"
    # a class missing from train is always an error: the run would report 36 classes and train on 35
    write_emnist(tmp_path, np.arange(35).repeat(2), mapping=False)
    with pytest.raises(DataError, match="1 of 36 classes have no training images: Z"):
        load_dataset(cfg.model_copy(update={"skip_bad_files": True}), (28, 28, 1))


@pytest.mark.parametrize("problem", ["magic", "truncated", "gzip", "count", "missing_images", "missing_labels"])
def test_emnist_errors(tmp_path, problem):
    up = upright_images(36).transpose(0, 2, 1)
    img = tmp_path / "emnist-byclass-train-images-idx3-ubyte.gz"
    lab = tmp_path / "emnist-byclass-train-labels-idx1-ubyte.gz"
    write_idx(img, up, 0x803)
    write_idx(lab, np.arange(36), 0x801)
    if problem == "magic":
        write_idx(img, up, 0x801)
        match = "magic 0x00000801"
    elif problem == "truncated":
        header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (36, 28, 28))
        write_idx(img, up, 0x803, raw=header + up.tobytes()[:1000])
        match = "truncated"
    elif problem == "gzip":
        img.write_bytes(img.read_bytes()[:40])
        match = "not a readable gzip"
    elif problem == "count":
        write_idx(lab, np.arange(35), 0x801)
        match = "count mismatch"
    elif problem == "missing_images":
        img.unlink()
        match = "training file not found"
    else:
        lab.unlink()
        match = "labels file not found"
    cfg = DatasetConfig(name="emnist_byclass", path=str(tmp_path))
    with pytest.raises(DataError, match=match) as err:
        load_dataset(cfg, (28, 28, 1))
    name = lab.name if problem in ("count", "missing_labels") else img.name
    assert name in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------
# class folders


def test_folder_dataset_pipeline(tmp_path):
    root = tmp_path / "flowers"
    write_class_folders(root, {"tulip": 6, "daisy": 5, "rose": 4}, ext="jpg")
    write_image(root / "rose" / "extra.png", mode="L")      # grayscale PNG inside an RGB set
    write_image(root / "daisy" / "sub" / "deep.bmp")         # nested and BMP
    write_image(root / "tulip" / "anim.gif")                  # GIF
    (root / "tulip" / "notes.txt").write_text("not an image")
    (root / "LICENSE.txt").write_text("loose files at the root are ignored")
    cfg = DatasetConfig(name="folder", path=str(root), validation_split=0.2, seed=2)
    ds = load_dataset(cfg, (12, 10, 3))
    assert ds.class_names == ["daisy", "rose", "tulip"]
    assert ds.train.paths is not None and ds.train.images is None
    assert len(ds.train) + len(ds.val) == 6 + 1 + 5 + 1 + 4 + 1
    assert per_class(ds.val, 3).tolist() == [1, 1, 1]
    assert ds.test is None

    everything = Split(np.concatenate([ds.train.labels, ds.val.labels]), None,
                       ds.train.paths + ds.val.paths, (12, 10, 3))
    xs, ys = [], []
    for x, y in everything.numpy_batches(4):
        assert x.dtype == np.uint8 and y.dtype == np.int32 and x.shape[1:] == (12, 10, 3)
        xs.append(x), ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert np.array_equal(y, everything.labels)
    gray = everything.paths.index(str(root / "rose" / "extra.png"))
    assert (x[gray, ..., 0] == x[gray, ..., 1]).all() and (x[gray, ..., 1] == x[gray, ..., 2]).all()

    # the same images converted to grayscale and resized with another interpolation
    g = Split(everything.labels, None, everything.paths, (7, 9, 1), interpolation="nearest")
    gx, gy = check_batch(g, (7, 9, 1), batch=30)
    assert np.array_equal(gy, everything.labels)

    # tf_dataset shuffles each epoch, same content; take() is seeded
    tfds = everything.tf_dataset(100, shuffle=True, seed=1)
    e1 = next(iter(tfds))[1].numpy()
    e2 = next(iter(tfds))[1].numpy()
    assert sorted(e1.tolist()) == sorted(ys[0].tolist() + sum((b.tolist() for b in ys[1:]), []))
    assert not np.array_equal(e1, e2) or len(set(e1.tolist())) == 1
    mem = everything.decoded()
    assert mem.images is not None and np.array_equal(mem.images, x) and np.array_equal(mem.labels, y)
    assert everything.decoded(max_bytes=10) is everything
    t1, t2 = everything.take(5, seed=3), everything.take(5, seed=3)
    assert t1.shape == (5, 12, 10, 3) and np.array_equal(t1, t2)
    assert everything.take(1000).shape[0] == len(everything)


def test_folder_test_path_and_errors(tmp_path):
    write_class_folders(tmp_path / "train", {"a": 4, "b": 4})
    write_class_folders(tmp_path / "test", {"b": 2})
    cfg = DatasetConfig(name="folder", path=str(tmp_path / "train"), test_path=str(tmp_path / "test"))
    # a class of train missing in the test folder: an error, or a note when skipping bad data
    with pytest.raises(DataError, match=r"test split \(folder .*test\) has no images of 1 of 2 classes: a"):
        load_dataset(cfg, (16, 16, 3))
    ds = load_dataset(cfg.model_copy(update={"skip_bad_files": True}), (16, 16, 3))
    assert ds.test is not None and ds.test.labels.tolist() == [1, 1]
    assert any("has no images of 1 of 2 classes: a" in n for n in ds.notes)
    write_class_folders(tmp_path / "test", {"a": 1})
    ds = load_dataset(cfg, (16, 16, 3))
    assert ds.test.labels.tolist() == [0, 1, 1]

    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="class folder .*empty holds no images"):
        load_dataset(cfg, (16, 16, 3))
    flat = tmp_path / "flat"
    flat.mkdir()
    write_image(flat / "x.png")
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(cfg.model_copy(update={"path": str(flat), "test_path": None}), (16, 16, 3))
    with pytest.raises(DataError, match="not found"):
        load_dataset(cfg.model_copy(update={"path": str(tmp_path / "nope")}), (16, 16, 3))


# ---------------------------------------------------------------------------
# Food-101


def test_food101(tmp_path):
    write_food101(tmp_path)
    cfg = DatasetConfig(name="food101", path=str(tmp_path), max_per_class=5)
    ds = load_dataset(cfg, (16, 16, 3))
    assert ds.class_names == ["apple_pie", "baklava", "churros"]
    assert len(ds.train) + len(ds.val) == 15 and len(ds.test) == 6
    check_batch(ds.test, (16, 16, 3))
    (tmp_path / "meta" / "test.txt").unlink()
    ds = load_dataset(cfg.model_copy(update={"test_split": 0.2}), (16, 16, 3))
    assert ds.test is not None and len(ds.test) == 3


@pytest.mark.parametrize("problem", ["classes", "train", "image"])
def test_food101_errors(tmp_path, problem):
    write_food101(tmp_path, n_test=0)
    if problem == "classes":
        (tmp_path / "meta" / "classes.txt").unlink()
        match = "classes.txt"
    elif problem == "train":
        (tmp_path / "meta" / "train.txt").unlink()
        match = "train.txt"
    else:
        next((tmp_path / "images" / "baklava").iterdir()).unlink()
        match = "image not found: .*baklava"
    with pytest.raises(DataError, match=match):
        load_dataset(DatasetConfig(name="food101", path=str(tmp_path)), (16, 16, 3))


@pytest.mark.parametrize("line", ["baklava/../../outside", "baklava/..", "baklava/sub/img", "baklava/"])
def test_food101_meta_lines_cannot_leave_the_image_folder(tmp_path, line):
    write_food101(tmp_path, n_test=0)
    # a real image outside the dataset that a '..' line would otherwise reach
    outside = tmp_path.parent / "outside.jpg"
    first = next((tmp_path / "images" / "baklava").iterdir())
    outside.write_bytes(first.read_bytes())
    with open(tmp_path / "meta" / "train.txt", "a") as f:
        f.write(line + "\n")
    with pytest.raises(DataError, match="not of the form <class>/<image id>"):
        load_dataset(DatasetConfig(name="food101", path=str(tmp_path)), (16, 16, 3))


@pytest.mark.parametrize("name", ["..", "a/b"])
def test_food101_class_names_must_be_folder_names(tmp_path, name):
    write_food101(tmp_path, n_test=0)
    with open(tmp_path / "meta" / "classes.txt", "a") as f:
        f.write(name + "\n")
    with pytest.raises(DataError, match="not a folder name"):
        load_dataset(DatasetConfig(name="food101", path=str(tmp_path)), (16, 16, 3))


# ---------------------------------------------------------------------------
# evaluation data


def test_load_eval_split_layouts(tmp_path):
    # EMNIST: test files win over train
    write_emnist(tmp_path / "em", np.arange(36))
    write_emnist(tmp_path / "em", np.array([0, 10, 35, 60]), split="test")
    split, names = load_eval_split(str(tmp_path / "em"), (28, 28, 1))
    assert split.labels.tolist() == [0, 10, 35] and names[10] == "A"
    # Food-101: meta/test.txt
    write_food101(tmp_path / "food")
    split, names = load_eval_split(str(tmp_path / "food"), (8, 8, 1))
    assert len(split) == 6 and names == ["apple_pie", "baklava", "churros"]
    check_batch(split, (8, 8, 1))
    # class folders, mapped onto a model's class order
    write_class_folders(tmp_path / "cls", {"cat": 2, "dog": 3})
    split, names = load_eval_split(str(tmp_path / "cls"), (8, 8, 3), class_names=["dog", "bird", "cat"])
    assert names == ["dog", "bird", "cat"] and split.labels.tolist() == [2, 2, 0, 0, 0]
    with pytest.raises(DataError, match="'cat'"):
        load_eval_split(str(tmp_path / "cls"), (8, 8, 3), class_names=["dog", "bird"])
    # built-in names
    split, names = load_eval_split("shapes", (16, 16, 3))
    assert names[0] == "circle" and len(split) == 6 * 60 and split.images.shape[1:] == (16, 16, 3)
    with pytest.raises(DataError, match="not found"):
        load_eval_split(str(tmp_path / "missing"), (8, 8, 3))


def test_in_memory_pipeline():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 6, 5, 1), dtype=np.uint8)
    s = Split(np.arange(10) % 3, images, None, (6, 5, 1))
    batches = list(s.numpy_batches(4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    tf_batches = [(x.numpy(), y.numpy()) for x, y in s.tf_dataset(4)]
    for (a, b), (c, d) in zip(batches, tf_batches, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d) and d.dtype == np.int32
    ds = s.tf_dataset(10, shuffle=True, seed=0)
    orders = [next(iter(ds))[1].numpy().tolist() for _ in range(3)]
    assert all(sorted(o) == sorted(s.labels.tolist()) for o in orders)
    assert s.take(3, seed=1).shape == (3, 6, 5, 1)


# ---------------------------------------------------------------------------
# the real data beside the repository (skipped when absent)


def test_real_emnist_sample():
    root = shared_dataset("emnist-byclass-sample")
    ds = load_dataset(DatasetConfig(name="emnist_byclass", path=str(root), max_per_class=20), (28, 28, 1))
    assert len(ds.class_names) == 36 and len(ds.train) + len(ds.val) <= 36 * 20
    x, y = check_batch(ds.train, (28, 28, 1), batch=64)
    assert x.mean() < 80  # white ink on black


def test_real_flowers():
    root = shared_dataset("flowers")
    ds = load_dataset(DatasetConfig(name="folder", path=str(root), max_per_class=10, test_split=0.2), (64, 64, 3))
    assert ds.class_names == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    check_batch(ds.train, (64, 64, 3), batch=8)
    assert ds.test is not None and len(ds.test) == 10


def test_real_food101():
    root = shared_dataset("food-101-10")
    ds = load_dataset(DatasetConfig(name="food101", path=str(root), max_per_class=8), (32, 32, 3))
    assert len(ds.class_names) == 10 and len(ds.train) + len(ds.val) == 80
    check_batch(ds.val, (32, 32, 3), batch=8)


# ---------------------------------------------------------------------------
# EMNIST .mat (the official "matlab.zip" layout)


def write_emnist_mat(path: Path, labels: np.ndarray, test_labels: np.ndarray | None = None) -> tuple:
    """An emnist-byclass.mat like the official one: dataset.{train,test}.{images,labels,writers}, dataset.mapping.

    Each images row is the upright 28x28 image flattened in MATLAB's column-major (Fortran) order, so a
    C-order reshape of a row gives the image transposed, as in the IDX files.
    """
    import scipy.io

    def part(lab, seed):
        up = upright_images(len(lab), seed)
        rows = up.reshape(len(lab), -1, order="F")
        assert np.array_equal(rows[0].reshape(28, 28), up[0].T)  # the documented layout
        return up, {"images": rows, "labels": np.asarray(lab, dtype=np.float64)[:, None],
                    "writers": np.zeros((len(lab), 1))}

    up, train = part(labels, 0)
    data = {"train": train}
    test_up = None
    if test_labels is not None:
        test_up, data["test"] = part(test_labels, 1)
    codes = list(range(48, 58)) + list(range(65, 91)) + list(range(97, 123))
    data["mapping"] = np.array([[i, c] for i, c in enumerate(codes)], dtype=np.float64)
    scipy.io.savemat(str(path), {"dataset": data})
    return up, test_up


def test_emnist_mat(tmp_path):
    labels = np.concatenate([np.arange(62), np.arange(36)])
    test_labels = np.concatenate([np.arange(36), [40, 50]])
    up, test_up = write_emnist_mat(tmp_path / "emnist-byclass.mat", labels, test_labels)
    cfg = DatasetConfig(name="emnist_byclass", path=str(tmp_path), validation_split=0.3)
    ds = load_dataset(cfg, (28, 28, 1))
    assert ds.class_names == [str(d) for d in range(10)] + [chr(c) for c in range(65, 91)]
    assert len(ds.train) + len(ds.val) == 72 and len(ds.test) == 36
    assert any("emnist-byclass.mat" in n for n in ds.notes)
    # upright, in the test split's own order, labels 0-35 only
    assert np.array_equal(ds.test.images[..., 0], test_up[:36]) and ds.test.labels.tolist() == list(range(36))
    x = np.concatenate([ds.train.images, ds.val.images])[..., 0]
    keep = np.flatnonzero(labels < 36)
    assert all(any(np.array_equal(img, up[k]) for k in keep) for img in x[:5])
    assert x[0, 3, 22] == 250 and x[0, 22, 3] < 20
    # dataset.path may name the .mat file itself; evaluation data too (its test part)
    ds2 = load_dataset(cfg.model_copy(update={"path": str(tmp_path / "emnist-byclass.mat")}), (28, 28, 1))
    assert np.array_equal(ds2.test.images, ds.test.images)
    split, names = load_eval_split(str(tmp_path / "emnist-byclass.mat"), (28, 28, 1))
    assert len(split) == 36 and names[35] == "Z"
    split, _ = load_eval_split(str(tmp_path), (14, 14, 1))
    assert split.images.shape == (36, 14, 14, 1)
    # IDX files win when both are present
    write_emnist(tmp_path, np.arange(36))
    ds3 = load_dataset(cfg, (28, 28, 1))
    assert ds3.test is None and "idx3" in ds3.notes[0]


def test_emnist_mat_errors(tmp_path):
    import scipy.io

    bad = tmp_path / "emnist-byclass.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    cfg = DatasetConfig(name="emnist_byclass", path=str(tmp_path))
    with pytest.raises(DataError, match="emnist-byclass.mat"):
        load_dataset(cfg, (28, 28, 1))
    scipy.io.savemat(str(bad), {"something": np.zeros(3)})
    with pytest.raises(DataError, match="no 'dataset' struct"):
        load_dataset(cfg, (28, 28, 1))
    scipy.io.savemat(str(bad), {"dataset": {"train": {"images": np.zeros((3, 784), np.uint8),
                                                      "labels": np.zeros((2, 1))}}})
    with pytest.raises(DataError, match="count mismatch .*3 images and 2 labels"):
        load_dataset(cfg, (28, 28, 1))


# ---------------------------------------------------------------------------
# generic train / validation / test folders, PlantVillage's 39 classes

PLANTVILLAGE = [
    "Apple___Apple_scab", "Apple___Black_rot", "Apple___Cedar_apple_rust", "Apple___healthy",
    "Background_without_leaves", "Blueberry___healthy", "Cherry___Powdery_mildew", "Cherry___healthy",
    "Corn___Cercospora_leaf_spot Gray_leaf_spot", "Corn___Common_rust", "Corn___Northern_Leaf_Blight",
    "Corn___healthy", "Grape___Black_rot", "Grape___Esca_(Black_Measles)", "Grape___Leaf_blight_(Isariopsis_Leaf_Spot)",
    "Grape___healthy", "Orange___Haunglongbing_(Citrus_greening)", "Peach___Bacterial_spot", "Peach___healthy",
    "Pepper,_bell___Bacterial_spot", "Pepper,_bell___healthy", "Potato___Early_blight", "Potato___Late_blight",
    "Potato___healthy", "Raspberry___healthy", "Soybean___healthy", "Squash___Powdery_mildew",
    "Strawberry___Leaf_scorch", "Strawberry___healthy", "Tomato___Bacterial_spot", "Tomato___Early_blight",
    "Tomato___Late_blight", "Tomato___Leaf_Mold", "Tomato___Septoria_leaf_spot",
    "Tomato___Spider_mites Two-spotted_spider_mite", "Tomato___Target_Spot",
    "Tomato___Tomato_Yellow_Leaf_Curl_Virus", "Tomato___Tomato_mosaic_virus", "Tomato___healthy",
]


def test_plantvillage_train_val_test_folders(tmp_path):
    assert len(PLANTVILLAGE) == 39
    shuffled = list(np.random.default_rng(0).permutation(PLANTVILLAGE))
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        for ci, cls in enumerate(shuffled):
            for i in range(n):
                # PlantVillage's files are upper-case .JPG; the class index is drawn into the pixels
                path = tmp_path / split / cls / f"image ({i}).JPG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((10, 12, 3), PLANTVILLAGE.index(cls) * 6, np.uint8)).save(path, quality=100)
    cfg = DatasetConfig(name="folder", path=str(tmp_path / "train"), val_path=str(tmp_path / "val"),
                        test_path=str(tmp_path / "test"))
    ds = load_dataset(cfg, (8, 8, 3))
    assert ds.class_names == sorted(PLANTVILLAGE) == PLANTVILLAGE
    assert ds.class_names[4] == "Background_without_leaves"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (117, 39, 39)
    assert any("validation split from" in n for n in ds.notes)
    for split in (ds.train, ds.val, ds.test):
        assert np.bincount(split.labels, minlength=39).min() >= 1
        x, y = split.to_numpy()
        assert np.allclose(x.reshape(len(x), -1).mean(1), y * 6, atol=2)  # each image under its own class
        assert all(Path(p).parent.name == ds.class_names[k] for p, k in zip(split.paths, y))
    # val_path / test_path belong to folder datasets
    with pytest.raises(DataError, match="val_path is only used by 'folder'"):
        load_dataset(DatasetConfig(name="shapes", val_path=str(tmp_path)), (8, 8, 3))
    # a validation folder with a class train does not have
    (tmp_path / "val" / "Zucchini___healthy").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "val" / "Zucchini___healthy" / "a.png")
    with pytest.raises(DataError, match="validation folder .* classes not in the training folder: Zucchini___healthy"):
        load_dataset(cfg, (8, 8, 3))


# ---------------------------------------------------------------------------
# preprocessing: aspect modes, image kinds


def _three_bands(h=20, w=40) -> np.ndarray:
    x = np.zeros((h, w, 3), np.uint8)
    x[:, : w // 4] = (255, 0, 0)
    x[:, w // 4: 3 * w // 4] = (0, 255, 0)
    x[:, 3 * w // 4:] = (0, 0, 255)
    return x


@pytest.mark.parametrize("interpolation", ["nearest", "bicubic"])
def test_aspect_modes(tmp_path, interpolation):
    from mcuzoo.data import resize_images

    src = _three_bands()  # 20 high, 40 wide
    Image.fromarray(src).save(tmp_path / "wide.png")
    Image.fromarray(src.transpose(1, 0, 2)).save(tmp_path / "tall.png")
    out = {}
    for aspect in ("fit", "crop", "pad"):
        mem = resize_images(src[None], (10, 10, 3), interpolation, aspect)[0]
        split = Split([0, 0], None, [str(tmp_path / "wide.png"), str(tmp_path / "tall.png")], (10, 10, 3),
                      interpolation, aspect)
        files, _ = split.to_numpy()
        assert np.array_equal(files[0], mem)  # files and in-memory arrays are treated alike
        out[aspect] = (mem.astype(int), files[1].astype(int))
    fit, crop, pad = out["fit"][0], out["crop"][0], out["pad"][0]
    # fit stretches: all three bands; crop keeps the centre square: green only
    assert fit[5, 0, 0] > 200 and fit[5, 9, 2] > 200 and fit[5, 5, 1] > 200
    assert (crop[..., 1] > 200).all() and (crop[..., [0, 2]] < 40).all()
    # pad letterboxes: 10 wide x 5 high of content between black bars
    assert (pad[:2] == 0).all() and (pad[8:] == 0).all() and pad[5, 0, 0] > 150 and pad[5, 9, 2] > 150
    tall_pad, tall_crop = out["pad"][1], out["crop"][1]
    assert (tall_pad[:, :2] == 0).all() and (tall_pad[:, 8:] == 0).all() and tall_pad[0, 5, 0] > 150
    assert (tall_crop[..., 1] > 200).all()


def test_aspect_in_load_dataset(tmp_path):
    write_emnist(tmp_path, np.arange(36).repeat(2))
    cfg = DatasetConfig(name="emnist_byclass", path=str(tmp_path))
    ds = load_dataset(cfg, (28, 56, 1), aspect="pad")
    assert ds.train.aspect == "pad" and (ds.train.images[:, :, :14] == 0).all()
    assert ds.train.images[:, :, 14:42].max() == 250
    crop = load_dataset(cfg, (56, 28, 1), aspect="crop")
    assert crop.train.images.shape[1:] == (56, 28, 1) and crop.train.images[:, :, :2].max() > 100
    with pytest.raises(DataError, match="aspect must be one of fit, crop, pad"):
        load_dataset(cfg, (28, 28, 1), aspect="squash")
    write_class_folders(tmp_path / "f", {"a": 2, "b": 2})
    split, _ = load_eval_split(str(tmp_path / "f"), (9, 9, 3), aspect="crop", interpolation="area")
    assert split.aspect == "crop" and split.interpolation == "area" and split.to_numpy()[0].shape == (4, 9, 9, 3)


def _png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit RGB PNG (PIL cannot write one)."""
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _decode_many(paths, shape, channels=3, interpolation="nearest") -> np.ndarray:
    """Decode files through one pipeline (building a pipeline costs a trace: tests keep them few)."""
    paths = [str(p) for p in paths]
    return Split([0] * len(paths), None, paths, tuple(shape) + (channels,), interpolation).to_numpy()[0]


def test_image_kinds(tmp_path):
    from PIL import ImageOps

    from mcuzoo.data.images import PIL_DECODE, inspect_file

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    cases = {}

    def case(name, expected, pil):
        cases[name] = (expected, pil)

    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    case("palette.png", np.asarray(Image.open(tmp_path / "palette.png").convert("RGB")), False)
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "palette_t.png", transparency=0)
    idx = np.asarray(pal)
    case("palette_t.png", np.where((idx == 0)[..., None], 0, np.asarray(pal.convert("RGB"))), True)
    alpha = rng.integers(0, 256, (12, 20), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    case("rgba.png", np.rint(rgb * (alpha[..., None] / 255.0)).astype(np.uint8), True)
    Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save(tmp_path / "la.png")
    case("la.png", np.repeat(np.rint(rgb[..., :1] * (alpha[..., None] / 255.0)), 3, -1).astype(np.uint8), True)
    g16 = rng.integers(0, 65536, (12, 20)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"
    case("gray16.png", np.repeat((g16 // 257).astype(np.uint8)[..., None], 3, -1), None)
    c16 = rng.integers(0, 65536, (12, 20, 3)).astype(np.uint16)
    _png16(tmp_path / "rgb16.png", c16)
    case("rgb16.png", (c16 // 257).astype(np.uint8), None)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    case("cmyk.jpg", np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")), True)
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.bmp")  # TF ignores BMP palettes
    case("palette.bmp", np.asarray(Image.open(tmp_path / "palette.bmp").convert("RGB")), True)
    Image.fromarray(rgb).save(tmp_path / "rgb.bmp")
    case("rgb.bmp", rgb, True)  # GIF and BMP go through PIL: TF refuses some files PIL reads
    Image.fromarray(rgb).save(tmp_path / "x.tif")
    case("x.tif", rgb, True)
    Image.fromarray(rgb[..., 1]).save(tmp_path / "gray.png")
    case("gray.png", np.repeat(rgb[..., 1:2], 3, -1), False)
    Image.fromarray(rgb).convert("1").save(tmp_path / "bilevel.png")
    case("bilevel.png", np.asarray(Image.open(tmp_path / "bilevel.png").convert("RGB")), False)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.jpg", quality=100)
    case("gray.jpg", None, False)

    names = list(cases)
    decoded = _decode_many([tmp_path / n for n in names], (12, 20))
    for name, x in zip(names, decoded):
        expected, pil = cases[name]
        info = inspect_file(str(tmp_path / name))
        assert info.error is None and (info.height, info.width) == (12, 20), name
        if pil is not None:
            assert (info.decode == PIL_DECODE) == pil, name
        if expected is None:  # grayscale JPEG into RGB: three equal channels
            assert (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()
            continue
        tol = 1 if name.endswith("16.png") else 0
        assert np.abs(x.astype(int) - expected.astype(int)).max() <= tol, name
    y = _decode_many([tmp_path / "gray.png", tmp_path / "rgb.bmp"], (12, 20), channels=1)
    assert y.shape == (2, 12, 20, 1) and np.abs(y[0, ..., 0].astype(int) - rgb[..., 1]).max() <= 1

    # EXIF orientation: all eight, PNG (lossless: exact) and JPEG (TF's IDCT differs slightly from PIL's)
    asym = np.zeros((12, 20, 3), np.uint8)
    asym[:3, :5] = 255
    asym[6:, 15:, 1] = 200
    by_shape: dict = {}
    for o in range(1, 9):
        for ext in ("png", "jpg"):
            im = Image.fromarray(asym)
            exif = im.getexif()
            exif[0x0112] = o
            path = tmp_path / f"orient{o}.{ext}"
            im.save(path, exif=exif.tobytes(), **({"quality": 100} if ext == "jpg" else {}))
            assert inspect_file(str(path)).decode == o
            by_shape.setdefault((12, 20) if o < 5 else (20, 12), []).append((o, ext, path))
    for shape, items in by_shape.items():
        for (o, ext, path), x in zip(items, _decode_many([i[2] for i in items], shape)):
            ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
            assert ref.shape[:2] == shape
            assert np.abs(x.astype(int) - ref).max() <= (0 if ext == "png" else 16), (o, ext)
            assert np.abs(x.astype(int) - ref).mean() <= (0 if ext == "png" else 2), (o, ext)
    # EXIF orientation in a CMYK JPEG goes through PIL, orientation applied there
    im = Image.fromarray(asym).convert("CMYK")
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "cmyk6.jpg", exif=exif.tobytes(), quality=100)
    assert inspect_file(str(tmp_path / "cmyk6.jpg")).decode == PIL_DECODE
    x = _decode_many([tmp_path / "cmyk6.jpg"], (20, 12))[0]
    assert x[:5, -3:].mean() > 200  # the white corner moved to the top right

    # odd sizes, every aspect mode
    for h, w in ((1, 1), (3, 301), (301, 3), (7, 5)):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"odd{h}x{w}.png")
    odd = sorted(str(p) for p in tmp_path.glob("odd*.png"))
    for aspect in ("fit", "crop", "pad"):
        x, _ = Split([0] * len(odd), None, odd, (16, 16, 3), "bilinear", aspect).to_numpy()
        assert x.shape == (4, 16, 16, 3)


def test_large_jpeg_scaled_decode(tmp_path):
    """Big JPEGs are decoded at a DCT scale (1/2 .. 1/8) that still covers the target: close to a full decode."""
    yy, xx = np.mgrid[0:600, 0:800]
    img = np.dstack([xx * 255 // 800, yy * 255 // 600, (xx + yy) % 256 // 2]).astype(np.uint8)
    img[200:400, 300:500] = (250, 30, 30)
    Image.fromarray(img).save(tmp_path / "big.jpg", quality=95)
    import tensorflow as tf

    ref = tf.image.resize(np.asarray(Image.open(tmp_path / "big.jpg"), np.float32)[None], (50, 64), "area")[0].numpy()
    x = _decode_many([tmp_path / "big.jpg"], (50, 64), interpolation="bilinear")[0]
    assert np.abs(x.astype(float) - ref).mean() < 3
    pad = Split([0], None, [str(tmp_path / "big.jpg")], (64, 64, 3), "bilinear", "pad").to_numpy()[0][0]
    assert (pad[:8] == 0).all() and (pad[-8:] == 0).all() and pad[32, 32, 0] > 200


# ---------------------------------------------------------------------------
# streaming and caching


def test_streaming_cache_and_numpy_gather(tmp_path, monkeypatch):
    from mcuzoo.data import core

    write_class_folders(tmp_path, {"a": 12, "b": 9})
    ds = load_dataset(DatasetConfig(name="folder", path=str(tmp_path), validation_split=0.2), (10, 10, 3))
    tr = ds.train
    streamed = [(x.numpy(), y.numpy()) for x, y in tr.tf_dataset(5, shuffle=True, seed=4)]
    # too small a budget: it keeps streaming
    small = [(x.numpy(), y.numpy()) for x, y in tr.tf_dataset(5, shuffle=True, seed=4, cache=100)]
    assert tr._decoded is None
    cached = [(x.numpy(), y.numpy()) for x, y in tr.tf_dataset(5, shuffle=True, seed=4, cache=True)]
    assert tr._decoded is not None and tr._decoded.images.shape == (len(tr), 10, 10, 3)
    assert streamed
    for a, b, c in zip(streamed, small, cached, strict=True):  # the same batches, in the same order
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])
    assert np.array_equal(tr.take(4, seed=2), Split(tr.labels, None, tr.paths, (10, 10, 3)).take(4, seed=2))

    # large in-memory splits are gathered from numpy, batch by batch, not copied into the graph
    mem = tr._decoded
    const = [(x.numpy(), y.numpy()) for x, y in mem.tf_dataset(4, shuffle=True, seed=1)]
    monkeypatch.setattr(core, "_CONSTANT_BYTES", 0)
    fresh = Split(mem.labels, mem.images, None, mem.image_shape)
    gathered = [(x.numpy(), y.numpy()) for x, y in fresh.tf_dataset(4, shuffle=True, seed=1)]
    assert fresh._tensors is None
    assert const
    for a, b in zip(const, gathered, strict=True):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_every_pipeline_runs_without_the_autotuning_thread(tmp_path, monkeypatch):
    """Split.tf_dataset turns tf.data autotuning off (its thread delayed each epoch's end by up to its tuning
    period), for every kind of split, and the datasets training builds on it keep that."""
    import tensorflow as tf

    from mcuzoo.data import core

    write_class_folders(tmp_path, {"a": 6, "b": 5})
    ds = load_dataset(DatasetConfig(name="folder", path=str(tmp_path), validation_split=0.2), (8, 8, 3))
    streamed = ds.train.tf_dataset(4, shuffle=True, seed=1)
    cached = ds.train.tf_dataset(4, shuffle=True, seed=1, cache=True)
    constant = ds.train._decoded.tf_dataset(4)
    monkeypatch.setattr(core, "_CONSTANT_BYTES", 0)
    gathered = Split(ds.train.labels, ds.train._decoded.images, None, (8, 8, 3)).tf_dataset(4)
    shard = tf.data.Options()
    shard.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    as_trained = cached.map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE).with_options(shard)
    for d in (streamed, cached, constant, gathered, as_trained):
        assert d.options().autotune.enabled is False
        assert sum(len(y) for _, y in d) == len(ds.train)  # and it still yields every image


def test_emnist_streams_only_kept_images(tmp_path):
    """IDX images are read in one streaming pass into one buffer; train and val are views of it."""
    labels = np.tile(np.arange(62), 5)
    up = write_emnist(tmp_path, labels)
    ds = load_dataset(DatasetConfig(name="emnist_byclass", path=str(tmp_path), max_per_class=3), (28, 28, 1))
    assert ds.train.images.base is not None and ds.train.images.base is ds.val.images.base
    from mcuzoo.data.emnist import IdxImages

    src = IdxImages(tmp_path / "emnist-byclass-train-images-idx3-ubyte.gz")
    idx = np.array([300, 5, 77, 5, 0])
    assert np.array_equal(src.read(idx)[..., 0], up[idx])
