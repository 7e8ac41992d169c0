"""`load_dataset` (training runs) and `load_eval_split` (``mcuzoo evaluate MODEL DATA``).

Splitting works on labels and positions only (`_Pool`); pixels are read once
at the end (`_materialize`): in-memory sources (built-in sets, EMNIST) are read
in one pass into one buffer of which train / validation / test are slices,
image files are checked up front (`images.index_files`) and decoded lazily by
the tf.data pipeline.

Bad data: every problem is a one-line DataError naming the file or folder;
with ``dataset.skip_bad_files: true`` unreadable images, images listed but
missing, and empty class folders are skipped instead, counted in
``Dataset.notes`` and listed in ``Dataset.skipped_files``. Either way a class
without training images is an error: a run never reports classes it did not
train on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import Config, DatasetConfig
from ..errors import DataError
from . import builtin, emnist, folders
from .core import Dataset, Split, _check_aspect, _check_interpolation, _check_shape, resize_images
from .images import index_files
from .splits import cap_per_class, stratified_split


class _Memory:
    """Images in memory at their native size."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def read(self, index: np.ndarray) -> np.ndarray:
        return self.images[index]


class _Files:
    """Checked image files (an `images.FileIndex`)."""

    def __init__(self, index):
        self.paths = index.paths
        self.decode = index.decode
        self.sizes = index.sizes


@dataclass
class _Pool:
    """Labelled items before splitting: positions ``index`` in a ``source``."""

    labels: np.ndarray
    source: Any
    index: np.ndarray

    def __len__(self):
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "_Pool":
        idx = np.asarray(idx, dtype=np.int64)
        return _Pool(self.labels[idx], self.source, self.index[idx])


def _memory_pool(images: np.ndarray, labels: np.ndarray) -> _Pool:
    return _Pool(np.asarray(labels, dtype=np.int32), _Memory(images), np.arange(len(labels), dtype=np.int64))


def _files_pool(index, labels: np.ndarray) -> _Pool:
    return _Pool(np.asarray(labels, dtype=np.int32), _Files(index), np.arange(len(index.paths), dtype=np.int64))


def _materialize(pools: list[Optional[_Pool]], image_shape, interpolation, aspect) -> list[Optional[Split]]:
    """Splits of the pools; pools sharing an array source are read in one pass into one buffer."""
    out: list[Optional[Split]] = [None] * len(pools)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(pools):
        if p is None:
            continue
        if isinstance(p.source, _Files):
            s = p.source
            out[i] = Split(p.labels, None, [s.paths[j] for j in p.index], image_shape, interpolation, aspect,
                           decode=s.decode[p.index], sizes=s.sizes[p.index])
        else:
            groups.setdefault(id(p.source), []).append(i)
    for members in groups.values():
        source = pools[members[0]].source
        images = source.read(np.concatenate([pools[i].index for i in members]))
        at = 0
        for i in members:
            n = len(pools[i])
            view = images[at:at + n]
            at += n
            out[i] = Split(pools[i].labels, resize_images(view, image_shape, interpolation, aspect), None,
                           image_shape, interpolation, aspect)
        del images
    return out


def _hold_out(split, fraction: float, seed: int, stream: int):
    """(the rest, the held-out part): ``fraction`` of each class of ``split``, stratified and seeded."""
    keep, held = stratified_split(split.labels, fraction, seed, stream=stream)
    return split.subset(keep), split.subset(held)


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def _shown(items: list[str], k: int = 10) -> str:
    return ", ".join(items[:k]) + (f" and {len(items) - k} more" if len(items) > k else "")


def _skip_note(notes: list[str], skipped: list[str], before: int) -> None:
    new = skipped[before:]
    if new:
        notes.append(f"skipped {len(new)} bad files (dataset.skip_bad_files): {_shown(new, 3)}")


def _check_classes(cfg: DatasetConfig, class_names: list[str], train: _Pool, extra: dict[str, _Pool],
                   notes: list[str], skipped: list[str]) -> None:
    """Every class needs training images; separately given val / test sets need every class too."""
    counts = np.bincount(train.labels, minlength=len(class_names))
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        why = f" ({len(skipped)} bad files were skipped)" if skipped else ""
        raise DataError(f"dataset '{cfg.name}': {len(empty)} of {len(class_names)} classes have no training "
                        f"images{why}: {_shown(empty)}; a run must not report classes it never trains on")
    for what, pool in extra.items():
        have = np.bincount(pool.labels, minlength=len(class_names))
        missing = [class_names[i] for i in np.flatnonzero(have == 0)]
        if not missing:
            continue
        msg = f"the {what} has no images of {len(missing)} of {len(class_names)} classes: {_shown(missing)}"
        if not cfg.skip_bad_files:
            raise DataError(f"{msg} (set dataset.skip_bad_files: true to go on without them)")
        notes.append(msg)


def _assemble(cfg: DatasetConfig, class_names: list[str], train: _Pool, test: Optional[_Pool],
              image_shape, interpolation, aspect, notes: list[str], skipped: list[str],
              cap_test: bool = True, val: Optional[_Pool] = None, separate: dict[str, str] | None = None) -> Dataset:
    """Cap, hold out test / validation (stratified, seeded), check classes, then read the pixels.

    ``separate`` names where a given "test" / "val" pool comes from: such splits must hold every class.
    """
    seed = cfg.seed
    cap = cfg.max_per_class
    separate = {k: v for k, v in (separate or {}).items() if {"test": test, "val": val}[k] is not None}
    if cap is not None:
        before = len(train)
        train = train.subset(cap_per_class(train.labels, cap, seed, stream=0))
        if len(train) < before:
            notes.append(f"max_per_class={cap}: kept {len(train)} of {before} training images")
        if test is not None and cap_test:
            before = len(test)
            test = test.subset(cap_per_class(test.labels, cap, seed, stream=1))
            if len(test) < before:
                notes.append(f"max_per_class={cap}: kept {len(test)} of {before} test images")
        if val is not None:
            before = len(val)
            val = val.subset(cap_per_class(val.labels, cap, seed, stream=2))
            if len(val) < before:
                notes.append(f"max_per_class={cap}: kept {len(val)} of {before} validation images")
    if test is None:
        if cfg.test_split > 0:
            train, test = _hold_out(train, cfg.test_split, seed, stream=1)
            notes.append(f"dataset has no test split; test_split={cfg.test_split:g} held out from train "
                         f"(stratified, seed {seed}): {len(test)} images")
        else:
            notes.append("dataset has no test split and test_split=0: evaluation will use the validation split")
    elif cfg.test_split > 0 and "test" in separate:
        notes.append(f"test_split={cfg.test_split:g} not used: the dataset has its own test split")
    if val is None:
        train, val = _hold_out(train, cfg.validation_split, seed, stream=0)
        notes.append(f"validation: {_pct(cfg.validation_split)} of train per class (stratified, seed {seed}): "
                     f"{len(val)} images")
    else:
        notes.append(f"validation split from {cfg.val_path}: {len(val)} images (validation_split not used)")
    if len(train) == 0:
        raise DataError(f"dataset '{cfg.name}' leaves no training images")
    extra = {}
    if "test" in separate:
        extra[f"test split ({separate['test']})"] = test
    if "val" in separate:
        extra[f"validation split ({separate['val']})"] = val
    _check_classes(cfg, class_names, train, extra, notes, skipped)
    tr, va, te = _materialize([train, val, test], image_shape, interpolation, aspect)
    return Dataset(name=cfg.name, class_names=list(class_names), train=tr, val=va, test=te, notes=notes,
                   skipped_files=list(skipped))


def _root(cfg: DatasetConfig, files_ok: bool = False) -> Path:
    if not cfg.path:
        raise DataError(f"dataset '{cfg.name}' needs dataset.path")
    root = Path(cfg.path).expanduser()
    if files_ok and root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    return root


def _only_folder_paths(cfg: DatasetConfig) -> None:
    for key in ("test_path", "val_path"):
        if getattr(cfg, key):
            raise DataError(f"dataset.{key} is only used by 'folder' datasets, not '{cfg.name}'")


def _index(paths: list[str], labels: np.ndarray, skip: bool, what: str, skipped: list[str]) -> _Pool:
    """Check the files; the pool of the usable ones (bad ones raise, or are skipped into ``skipped``)."""
    index = index_files(paths, skip_bad=skip, what=what)
    skipped += index.skipped
    return _files_pool(index, np.asarray(labels, dtype=np.int32)[index.kept])


def _class_folder_pool(path: Path, what: str, names: list[str] | None, skip: bool, notes: list[str],
                       skipped: list[str]) -> tuple[list[str], _Pool]:
    """(class names, pool) of a class-per-folder tree; with ``names`` (train's), labels index those."""
    fnames, paths, labels = folders.scan_class_folders(path, what, allow_empty=skip)
    if skip:
        for d in folders.empty_class_folders(path):
            skipped.append(f"{d}: class folder holds no images (left out)")
            notes.append(f"{what} class folder {d} holds no images: left out")
    if names is not None:
        unknown = [n for n in fnames if n not in names]
        if unknown:
            raise DataError(f"{what} folder {path} has classes not in the training folder: {_shown(unknown)}")
        remap = np.array([names.index(n) for n in fnames], dtype=np.int32)
        labels = remap[labels]
    return fnames, _index(paths, labels, skip, f"{what} {path}", skipped)


def load_run_dataset(cfg: Config) -> Dataset:
    """The dataset of a run's config, at its model's input shape and with its preprocessing."""
    p = cfg.preprocessing
    return load_dataset(cfg.dataset, tuple(cfg.model.input_shape), p.interpolation, aspect=p.aspect)


def load_dataset(cfg: DatasetConfig, image_shape: tuple[int, int, int], interpolation: str = "bilinear",
                 aspect: str = "fit") -> Dataset:
    """Load (or generate) the configured dataset with train / validation / test splits at ``image_shape``.

    ``interpolation`` and ``aspect`` are ``preprocessing.interpolation`` and
    ``preprocessing.aspect`` (fit, crop or pad; see `core.fit_images`).
    """
    image_shape = _check_shape(image_shape)
    _check_interpolation(interpolation)
    _check_aspect(aspect)
    notes: list[str] = []
    skipped: list[str] = []
    name = cfg.name
    skip = cfg.skip_bad_files
    args = (image_shape, interpolation, aspect)

    if name in builtin.BUILTIN:
        _only_folder_paths(cfg)
        if cfg.path:
            notes.append(f"dataset.path is not used by the built-in dataset '{name}'")
        n = cfg.samples_per_class
        if cfg.max_per_class is not None and cfg.max_per_class < n:
            notes.append(f"max_per_class={cfg.max_per_class} caps samples_per_class={n}")
            n = cfg.max_per_class
        x, y = builtin.generate(name, n, image_shape, cfg.seed, builtin.TRAIN_STREAM)
        n_test = builtin.test_count(n)
        tx, ty = builtin.generate(name, n_test, image_shape, cfg.seed, builtin.TEST_STREAM)
        names = builtin.builtin_class_names(name)
        extra = f" from {len(builtin.glyph_faces())} font faces" if name == "glyphs36" else ""
        notes.append(f"{name}: {n} generated images per class{extra} (seed {cfg.seed}); "
                     f"separate generated test set of {n_test} per class")
        if cfg.test_split > 0:
            notes.append(f"test_split={cfg.test_split:g} not used: '{name}' has its own test set")
        return _assemble(cfg, names, _memory_pool(x, y), _memory_pool(tx, ty), *args, notes, skipped,
                         cap_test=False)

    if name == "emnist_byclass":
        _only_folder_paths(cfg)
        root = _root(cfg, files_ok=True)
        pair = emnist.find_pair(root, "train") if root.is_dir() else None
        test, test_source = None, ""
        if pair is not None:
            images, keep, y = emnist.open_pair(*pair)
            names = emnist.class_names(root, emnist.PREFERRED_PREFIX)
            train = _Pool(y, images, keep)
            tpair = emnist.find_pair(root, "test")
            if tpair is not None:
                timages, tkeep, ty = emnist.open_pair(*tpair)
                test = _Pool(ty, timages, tkeep)
                test_source = str(tpair[0])
                notes.append(f"test split from {tpair[0].name}")
            notes.insert(0, f"EMNIST byclass from {root}: {len(y)} images with labels 0-35 in {pair[0].name}")
        else:
            mat = emnist.find_mat(root)
            if mat is None:
                raise DataError(f"EMNIST training file not found: {root / 'emnist-byclass-train-images-idx3-ubyte.gz'}"
                                f" (nor {root / emnist.MAT_NAME})")
            content = emnist.open_mat(mat)
            rows, keep, y = content["train"]
            names = content["names"]
            train = _Pool(y, rows, keep)
            if content["test"] is not None:
                trows, tkeep, ty = content["test"]
                test = _Pool(ty, trows, tkeep)
                test_source = f"{mat} dataset.test"
                notes.append(f"test split from {mat.name} (dataset.test)")
            notes.insert(0, f"EMNIST byclass from {mat}: {len(y)} training images with labels 0-35")
        return _assemble(cfg, names, train, test, *args, notes, skipped,
                         separate={"test": test_source})

    if name == "folder":
        root = _root(cfg)
        names, train = _class_folder_pool(root, "dataset", None, skip, notes, skipped)
        notes.insert(0, f"class-per-folder dataset {root}: {len(names)} classes, {len(train)} images")
        test = val = None
        separate = {}
        if cfg.test_path:
            _, test = _class_folder_pool(Path(cfg.test_path).expanduser(), "test", names, skip, notes, skipped)
            notes.append(f"test split from {cfg.test_path}: {len(test)} images")
            separate["test"] = f"folder {cfg.test_path}"
        if cfg.val_path:
            _, val = _class_folder_pool(Path(cfg.val_path).expanduser(), "validation", names, skip, notes, skipped)
            separate["val"] = f"folder {cfg.val_path}"
        _skip_note(notes, skipped, 0)
        return _assemble(cfg, names, train, test, *args, notes, skipped, val=val, separate=separate)

    if name == "food101":
        _only_folder_paths(cfg)
        root = _root(cfg)
        if not (root / "meta").is_dir():
            raise DataError(f"Food-101 meta folder not found: {root / 'meta'}")
        names = folders.food101_classes(root)
        paths, labels = folders.food101_split(root, "train", names, skipped if skip else None)
        train = _index(paths, labels, skip, f"Food-101 {root}", skipped)
        notes.append(f"Food-101 {root}: {len(names)} classes, {len(train)} images in meta/train.txt")
        test = None
        if (root / "meta" / "test.txt").is_file():
            tpaths, tlabels = folders.food101_split(root, "test", names, skipped if skip else None)
            test = _index(tpaths, tlabels, skip, f"Food-101 {root}", skipped)
            notes.append(f"test split from meta/test.txt: {len(test)} images")
        _skip_note(notes, skipped, 0)
        return _assemble(cfg, names, train, test, *args, notes, skipped,
                         separate={"test": str(root / "meta" / "test.txt")})

    raise DataError(f"unknown dataset '{name}'")


def _map_to_model(labels: np.ndarray, names: list[str], model_names: list[str], what: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(model_names)}
    present = np.unique(labels)
    unknown = [names[i] for i in present if names[i] not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise DataError(f"{what} has classes the model does not know: {shown} "
                        f"(the model has {len(model_names)} classes)")
    table = np.array([index.get(n, -1) for n in names], dtype=np.int32)
    return table[labels]


def load_eval_split(path: str, image_shape, class_names: list[str] | None = None,
                    interpolation: str = "bilinear", aspect: str = "fit",
                    skip_bad_files: bool = False) -> tuple[Split, list[str]]:
    """The split to evaluate a model on: ``path`` is a dataset folder (layout detected), an EMNIST .mat
    file or a built-in name.

    Returns (split, class names indexing its labels). With ``class_names`` (the
    model's), labels are mapped onto those indices by name.
    """
    image_shape = _check_shape(image_shape)
    _check_interpolation(interpolation)
    _check_aspect(aspect)
    p = Path(str(path)).expanduser()
    skipped: list[str] = []
    if not p.exists() and str(path) in builtin.BUILTIN:
        cfg = DatasetConfig(name=str(path))
        x, y = builtin.generate(cfg.name, builtin.test_count(cfg.samples_per_class), image_shape, cfg.seed,
                                builtin.TEST_STREAM)
        names = builtin.builtin_class_names(cfg.name)
        pool, what = _memory_pool(x, y), f"built-in dataset '{cfg.name}'"
    elif p.is_file() and p.suffix.lower() == ".mat":
        content = emnist.open_mat(p)
        rows, keep, y = content["test"] or content["train"]
        names = content["names"]
        pool, what = _Pool(y, rows, keep), f"EMNIST file {p}"
    elif not p.is_dir():
        raise DataError(f"evaluation data not found: {path} (give a dataset folder or a built-in dataset: "
                        f"{', '.join(builtin.BUILTIN)})")
    elif emnist.has_emnist_files(p):
        pair = emnist.find_pair(p, "test") or emnist.find_pair(p, "train")
        if pair is not None:
            images, keep, y = emnist.open_pair(*pair)
            names = emnist.class_names(p, emnist.PREFERRED_PREFIX)
            pool, what = _Pool(y, images, keep), f"EMNIST file {pair[0]}"
        else:
            mat = emnist.find_mat(p)
            content = emnist.open_mat(mat)
            rows, keep, y = content["test"] or content["train"]
            names = content["names"]
            pool, what = _Pool(y, rows, keep), f"EMNIST file {mat}"
    elif (p / "meta").is_dir():
        names = folders.food101_classes(p)
        split = "test" if (p / "meta" / "test.txt").is_file() else "train"
        paths, labels = folders.food101_split(p, split, names, skipped if skip_bad_files else None)
        what = f"Food-101 {p / 'meta' / (split + '.txt')}"
        pool = _index(paths, labels, skip_bad_files, what, skipped)
    else:
        names, paths, labels = folders.scan_class_folders(p, "evaluation data", allow_empty=skip_bad_files)
        what = f"folder {p}"
        pool = _index(paths, labels, skip_bad_files, what, skipped)
    if len(pool) == 0:
        raise DataError(f"{what} holds no images to evaluate")
    if class_names is not None:
        model_names = [str(n) for n in class_names]
        pool = _Pool(_map_to_model(pool.labels, names, model_names, what), pool.source, pool.index)
        names = model_names
    return _materialize([pool], image_shape, interpolation, aspect)[0], list(names)
