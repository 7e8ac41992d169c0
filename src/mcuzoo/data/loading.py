"""`load_dataset` (training runs) and `load_eval_split` (``mcuzoo evaluate MODEL DATA``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import builtin, emnist, folders
from .core import Dataset, Split, _check_interpolation, _check_shape, resize_images
from .splits import cap_per_class, stratified_split


@dataclass
class _Pool:
    """Labelled items before splitting: images at native size, or file paths."""

    labels: np.ndarray
    images: Optional[np.ndarray] = None
    paths: Optional[list[str]] = None

    def __len__(self):
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "_Pool":
        idx = np.asarray(idx, dtype=np.int64)
        if self.images is not None:
            return _Pool(self.labels[idx], images=self.images[idx])
        return _Pool(self.labels[idx], paths=[self.paths[i] for i in idx])

    def to_split(self, image_shape, interpolation) -> Split:
        if self.images is not None:
            return Split(self.labels, resize_images(self.images, image_shape, interpolation), None, image_shape,
                         interpolation)
        return Split(self.labels, None, list(self.paths), image_shape, interpolation)


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def _assemble(cfg: DatasetConfig, class_names: list[str], train: _Pool, test: Optional[_Pool],
              image_shape, interpolation, notes: list[str], cap_test: bool = True) -> Dataset:
    seed = cfg.seed
    cap = cfg.max_per_class
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
    if test is None:
        if cfg.test_split > 0:
            keep, held = stratified_split(train.labels, cfg.test_split, seed, stream=1)
            test = train.subset(held)
            train = train.subset(keep)
            notes.append(f"dataset has no test split; test_split={cfg.test_split:g} held out from train "
                         f"(stratified, seed {seed}): {len(test)} images")
        else:
            notes.append("dataset has no test split and test_split=0: evaluation will use the validation split")
    keep, held = stratified_split(train.labels, cfg.validation_split, seed, stream=0)
    val = train.subset(held)
    train = train.subset(keep)
    notes.append(f"validation: {_pct(cfg.validation_split)} of train per class (stratified, seed {seed}): "
                 f"{len(val)} images")
    counts = np.bincount(train.labels, minlength=len(class_names))
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        shown = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        notes.append(f"{len(empty)} classes have no training images: {shown}")
    if len(train) == 0:
        raise DataError(f"dataset '{cfg.name}' leaves no training images")
    return Dataset(
        name=cfg.name,
        class_names=list(class_names),
        train=train.to_split(image_shape, interpolation),
        val=val.to_split(image_shape, interpolation),
        test=test.to_split(image_shape, interpolation) if test is not None else None,
        notes=notes,
    )


def _root(cfg: DatasetConfig) -> Path:
    if not cfg.path:
        raise DataError(f"dataset '{cfg.name}' needs dataset.path")
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    return root


def _no_test_path(cfg: DatasetConfig) -> None:
    if cfg.test_path:
        raise DataError(f"dataset.test_path is only used by 'folder' datasets, not '{cfg.name}'")


def load_dataset(cfg: DatasetConfig, image_shape: tuple[int, int, int], interpolation: str = "bilinear") -> Dataset:
    """Load (or generate) the configured dataset with train / validation / test splits at ``image_shape``."""
    image_shape = _check_shape(image_shape)
    _check_interpolation(interpolation)
    notes: list[str] = []
    name = cfg.name

    if name in builtin.BUILTIN:
        _no_test_path(cfg)
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
        return _assemble(cfg, names, _Pool(y, images=x), _Pool(ty, images=tx), image_shape, interpolation, notes,
                         cap_test=False)

    root = _root(cfg)
    if name == "emnist_byclass":
        _no_test_path(cfg)
        pair = emnist.find_pair(root, "train")
        if pair is None:
            raise DataError(f"EMNIST training file not found: {root / 'emnist-byclass-train-images-idx3-ubyte.gz'}")
        names = emnist.class_names(root, emnist.PREFERRED_PREFIX)
        x, y = emnist.load_pair(*pair)
        test = None
        tpair = emnist.find_pair(root, "test")
        if tpair is not None:
            tx, ty = emnist.load_pair(*tpair)
            test = _Pool(ty, images=tx)
            notes.append(f"test split from {tpair[0].name}")
        notes.insert(0, f"EMNIST byclass from {root}: {len(y)} images with labels 0-35 in {pair[0].name}")
        return _assemble(cfg, names, _Pool(y, images=x), test, image_shape, interpolation, notes)

    if name == "folder":
        names, paths, labels = folders.scan_class_folders(root, "dataset")
        notes.append(f"class-per-folder dataset {root}: {len(names)} classes, {len(paths)} images")
        test = None
        if cfg.test_path:
            tnames, tpaths, tlabels = folders.scan_class_folders(Path(cfg.test_path).expanduser(), "test")
            unknown = [n for n in tnames if n not in names]
            if unknown:
                raise DataError(f"test folder {cfg.test_path} has classes not in the training folder: "
                                f"{', '.join(unknown[:10])}")
            remap = np.array([names.index(n) for n in tnames], dtype=np.int32)
            test = _Pool(remap[tlabels], paths=tpaths)
            notes.append(f"test split from {cfg.test_path}: {len(tpaths)} images")
        return _assemble(cfg, names, _Pool(labels, paths=paths), test, image_shape, interpolation, notes)

    if name == "food101":
        _no_test_path(cfg)
        if not (root / "meta").is_dir():
            raise DataError(f"Food-101 meta folder not found: {root / 'meta'}")
        names = folders.food101_classes(root)
        paths, labels = folders.food101_split(root, "train", names)
        notes.append(f"Food-101 {root}: {len(names)} classes, {len(paths)} images in meta/train.txt")
        test = None
        if (root / "meta" / "test.txt").is_file():
            tpaths, tlabels = folders.food101_split(root, "test", names)
            test = _Pool(tlabels, paths=tpaths)
            notes.append(f"test split from meta/test.txt: {len(tpaths)} images")
        return _assemble(cfg, names, _Pool(labels, paths=paths), test, image_shape, interpolation, notes)

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
                    interpolation: str = "bilinear") -> tuple[Split, list[str]]:
    """The split to evaluate a model on: ``path`` is a dataset folder (layout detected) or a built-in name.

    Returns (split, class names indexing its labels). With ``class_names`` (the
    model's), labels are mapped onto those indices by name.
    """
    image_shape = _check_shape(image_shape)
    _check_interpolation(interpolation)
    p = Path(str(path)).expanduser()
    if not p.exists() and str(path) in builtin.BUILTIN:
        cfg = DatasetConfig(name=str(path))
        x, y = builtin.generate(cfg.name, builtin.test_count(cfg.samples_per_class), image_shape, cfg.seed,
                                builtin.TEST_STREAM)
        names = builtin.builtin_class_names(cfg.name)
        pool, what = _Pool(y, images=x), f"built-in dataset '{cfg.name}'"
    elif not p.is_dir():
        raise DataError(f"evaluation data not found: {path} (give a dataset folder or a built-in dataset: "
                        f"{', '.join(builtin.BUILTIN)})")
    elif emnist.has_emnist_files(p):
        pair = emnist.find_pair(p, "test") or emnist.find_pair(p, "train")
        if pair is None:
            raise DataError(f"EMNIST folder {p} has no '*-test-images-idx3-ubyte.gz' or '*-train-images-idx3-ubyte.gz'")
        x, y = emnist.load_pair(*pair)
        names = emnist.class_names(p, emnist.PREFERRED_PREFIX)
        pool, what = _Pool(y, images=x), f"EMNIST file {pair[0]}"
    elif (p / "meta").is_dir():
        names = folders.food101_classes(p)
        split = "test" if (p / "meta" / "test.txt").is_file() else "train"
        paths, labels = folders.food101_split(p, split, names)
        pool, what = _Pool(labels, paths=paths), f"Food-101 {p / 'meta' / (split + '.txt')}"
    else:
        names, paths, labels = folders.scan_class_folders(p, "evaluation data")
        pool, what = _Pool(labels, paths=paths), f"folder {p}"
    if len(pool) == 0:
        raise DataError(f"{what} holds no images to evaluate")
    if class_names is not None:
        model_names = [str(n) for n in class_names]
        pool = _Pool(_map_to_model(pool.labels, names, model_names, what), images=pool.images, paths=pool.paths)
        names = model_names
    return pool.to_split(image_shape, interpolation), list(names)
