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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


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
    labels = np.array([0, 1, 35, 36, 61, 10, 0, 1, 2, 2, 3, 3, 40, 0, 1, 35] * 3)
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
    ds = load_dataset(DatasetConfig(name="emnist_byclass", path=str(tmp_path)), (28, 28, 1))
    assert ds.class_names[10] == "A" and ds.test is not None and sorted(ds.test.labels.tolist()) == [5, 6, 7]
    split, names = load_eval_split(str(tmp_path), (28, 28, 1))
    assert len(split) == 3 and names[10] == "A"


@pytest.mark.parametrize("problem", ["magic", "truncated", "gzip", "count", "missing_images", "missing_labels"])
def test_emnist_errors(tmp_path, problem):
    up = upright_images(6).transpose(0, 2, 1)
    img = tmp_path / "emnist-byclass-train-images-idx3-ubyte.gz"
    lab = tmp_path / "emnist-byclass-train-labels-idx1-ubyte.gz"
    write_idx(img, up, 0x803)
    write_idx(lab, np.arange(6), 0x801)
    if problem == "magic":
        write_idx(img, up, 0x801)
        match = "magic 0x00000801"
    elif problem == "truncated":
        header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (6, 28, 28))
        write_idx(img, up, 0x803, raw=header + up.tobytes()[:1000])
        match = "truncated"
    elif problem == "gzip":
        img.write_bytes(img.read_bytes()[:40])
        match = "not a readable gzip"
    elif problem == "count":
        write_idx(lab, np.arange(5), 0x801)
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
    ds = load_dataset(cfg, (16, 16, 3))
    assert ds.test is not None and ds.test.labels.tolist() == [1, 1]

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
    for (a, b), (c, d) in zip(batches, tf_batches):
        assert np.array_equal(a, c) and np.array_equal(b, d) and d.dtype == np.int32
    ds = s.tf_dataset(10, shuffle=True, seed=0)
    orders = [next(iter(ds))[1].numpy().tolist() for _ in range(3)]
    assert all(sorted(o) == sorted(s.labels.tolist()) for o in orders)
    assert s.take(3, seed=1).shape == (3, 6, 5, 1)


# ---------------------------------------------------------------------------
# the real data beside the repository (skipped when absent)


def _shared(name: str) -> Path:
    p = SHARED / name
    if not p.is_dir():
        pytest.skip(f"{p} not available")
    return p


def test_real_emnist_sample():
    root = _shared("emnist-byclass-sample")
    ds = load_dataset(DatasetConfig(name="emnist_byclass", path=str(root), max_per_class=20), (28, 28, 1))
    assert len(ds.class_names) == 36 and len(ds.train) + len(ds.val) <= 36 * 20
    x, y = check_batch(ds.train, (28, 28, 1), batch=64)
    assert x.mean() < 80  # white ink on black


def test_real_flowers():
    root = _shared("flowers")
    ds = load_dataset(DatasetConfig(name="folder", path=str(root), max_per_class=10, test_split=0.2), (64, 64, 3))
    assert ds.class_names == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    check_batch(ds.train, (64, 64, 3), batch=8)
    assert ds.test is not None and len(ds.test) == 10


def test_real_food101():
    root = _shared("food-101-10")
    ds = load_dataset(DatasetConfig(name="food101", path=str(root), max_per_class=8), (32, 32, 3))
    assert len(ds.class_names) == 10 and len(ds.train) + len(ds.val) == 80
    check_batch(ds.val, (32, 32, 3), batch=8)
