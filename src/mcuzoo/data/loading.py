"""`load_dataset` (training runs) and `load_eval_split` (``mcuzoo evaluate MODEL DATA``).

Each dataset layout (:mod:`mcuzoo.layouts`) is read by its module in :mod:`mcuzoo.data.layouts`, which
gives class names and `Pool` s (:mod:`mcuzoo.data.pools`); ``mcuzoo evaluate`` asks each layout's
``detect`` in registration order (fallbacks, the plain class-per-folder layout, last).

Splitting works on labels and positions only (`Pool`); pixels are read once
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

from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Config, DatasetConfig
from ..errors import DataError
from ..layouts import LAYOUTS, get_layout
from .core import Dataset, Split, _check_aspect, _check_interpolation, _check_shape, resize_images
from .layouts import reader
from .pools import Files, Pool, shown
from .splits import cap_per_class, stratified_split


def _materialize(pools: list[Optional[Pool]], image_shape, interpolation, aspect) -> list[Optional[Split]]:
    """Splits of the pools; pools sharing an array source are read in one pass into one buffer."""
    out: list[Optional[Split]] = [None] * len(pools)
    groups: dict[int, list[int]] = {}
    live: dict[int, Pool] = {}  # the pools read from arrays
    for i, p in enumerate(pools):
        if p is None:
            continue
        if isinstance(p.source, Files):
            s = p.source
            out[i] = Split(p.labels, None, [s.paths[j] for j in p.index], image_shape, interpolation, aspect,
                           decode=s.decode[p.index], sizes=s.sizes[p.index])
        else:
            live[i] = p
            groups.setdefault(id(p.source), []).append(i)
    for members in groups.values():
        source = live[members[0]].source
        images = source.read(np.concatenate([live[i].index for i in members]))
        at = 0
        for i in members:
            n = len(live[i])
            view = images[at:at + n]
            at += n
            out[i] = Split(live[i].labels, resize_images(view, image_shape, interpolation, aspect), None,
                           image_shape, interpolation, aspect)
        del images
    return out


def _hold_out(split, fraction: float, seed: int, stream: int):
    """(the rest, the held-out part): ``fraction`` of each class of ``split``, stratified and seeded."""
    keep, held = stratified_split(split.labels, fraction, seed, stream=stream)
    return split.subset(keep), split.subset(held)


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def _check_classes(cfg: DatasetConfig, class_names: list[str], train: Pool, extra: dict[str, Pool],
                   notes: list[str], skipped: list[str]) -> None:
    """Every class needs training images; separately given val / test sets need every class too."""
    counts = np.bincount(train.labels, minlength=len(class_names))
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        why = f" ({len(skipped)} bad files were skipped)" if skipped else ""
        raise DataError(f"dataset '{cfg.name}': {len(empty)} of {len(class_names)} classes have no training "
                        f"images{why}: {shown(empty)}; a run must not report classes it never trains on")
    for what, pool in extra.items():
        have = np.bincount(pool.labels, minlength=len(class_names))
        missing = [class_names[i] for i in np.flatnonzero(have == 0)]
        if not missing:
            continue
        msg = f"the {what} has no images of {len(missing)} of {len(class_names)} classes: {shown(missing)}"
        if not cfg.skip_bad_files:
            raise DataError(f"{msg} (set dataset.skip_bad_files: true to go on without them)")
        notes.append(msg)


def _check_no_shared_files(pools: dict[str, Optional[Pool]]) -> None:
    """No image file is in two splits (a symlink from the test folder into train would leak it)."""
    from .folders import same_file_twice
    from .pools import Files

    groups = {what: [pool.source.paths[i] for i in pool.index] for what, pool in pools.items()
              if pool is not None and isinstance(pool.source, Files)}
    twice = same_file_twice(groups) if len(groups) > 1 else None
    if twice:
        raise DataError(f"image {twice[0]} is in the {twice[1]} split and in the {twice[2]} split (a symlink or a "
                        "second path to one file): the splits must not share images")


def _assemble(cfg: DatasetConfig, class_names: list[str], train: Pool, test: Optional[Pool],
              image_shape, interpolation, aspect, notes: list[str], skipped: list[str],
              cap_test: bool = True, val: Optional[Pool] = None, separate: dict[str, str] | None = None) -> Dataset:
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
    extra: dict[str, Pool] = {}
    if "test" in separate and test is not None:  # separate names only given pools
        extra[f"test split ({separate['test']})"] = test
    if "val" in separate and val is not None:
        extra[f"validation split ({separate['val']})"] = val
    _check_classes(cfg, class_names, train, extra, notes, skipped)
    _check_no_shared_files({"training": train, "validation": val, "test": test})
    tr, va, te = _materialize([train, val, test], image_shape, interpolation, aspect)
    assert tr is not None and va is not None  # from the pools train and val, which are given
    return Dataset(name=cfg.name, class_names=list(class_names), train=tr, val=va, test=te, notes=notes,
                   skipped_files=list(skipped))


def load_run_dataset(cfg: Config) -> Dataset:
    """The dataset of a run's config, at its model's input shape and with its preprocessing."""
    p = cfg.preprocessing
    return load_dataset(cfg.dataset, cfg.model.input_shape, p.interpolation, aspect=p.aspect)


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
    layout = get_layout(cfg.name)
    src = reader(layout).load(cfg, image_shape, notes, skipped)
    return _assemble(cfg, src.names, src.train, src.test, image_shape, interpolation, aspect, notes, skipped,
                     cap_test=src.cap_test, val=src.val, separate=src.separate)


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
    given = str(path)
    layouts = sorted(LAYOUTS.values(), key=lambda lay: lay.fallback)  # registration order, fallbacks last
    found = next((m for m in dict.fromkeys(reader(lay) for lay in layouts) if m.detect(p, given)), None)
    if found is None:
        builtins = [lay.name for lay in layouts if lay.builtin]
        raise DataError(f"evaluation data not found: {path} (give a dataset folder or a built-in dataset: "
                        f"{', '.join(builtins)})")
    names, pool, what = found.load_eval(p, given, image_shape, skip_bad_files, skipped)
    if len(pool) == 0:
        raise DataError(f"{what} holds no images to evaluate")
    if class_names is not None:
        model_names = [str(n) for n in class_names]
        pool = Pool(_map_to_model(pool.labels, names, model_names, what), pool.source, pool.index)
        names = model_names
    split = _materialize([pool], image_shape, interpolation, aspect)[0]
    assert split is not None
    return split, list(names)
