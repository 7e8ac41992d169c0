"""Image-file datasets: class-per-folder (tf_flowers, PlantVillage) and Food-101.

Only file lists are built here; files are checked by `images.index_files` and
decoded lazily by `Split.tf_dataset`. Class names are the sorted folder names,
whatever they are (PlantVillage's 39 classes include ``Background_without_leaves``:
it is a class like any other).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .core import IMAGE_EXTENSIONS


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(folder: Path) -> list[str]:
    """Image files in folder and its subfolders, in a stable order.

    Symlinks are followed, but a folder already walked (a symlink loop, or two links to one folder) is not
    walked again, and a file reached twice (by a symlink) is listed once, under its first path.
    """
    found, seen_dirs, seen_files = [], set(), set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not _is_image(f):
                continue
            path = os.path.join(dirpath, f)
            real = os.path.realpath(path)
            if real not in seen_files:
                seen_files.add(real)
                found.append(path)
    return found


def same_file_twice(groups: dict[str, list[str]]) -> tuple[str, str, str] | None:
    """(file, group a, group b) for the first image that two groups (classes, splits) share through a symlink
    or a second path, else None."""
    owner: dict[str, str] = {}
    for name, paths in groups.items():
        for p in paths:
            real = os.path.realpath(p)
            other = owner.setdefault(real, name)
            if other != name:
                return p, other, name
    return None


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))),
                  key=lambda p: p.name)


def scan_class_folders(root: str | Path, what: str = "dataset",
                       allow_empty: bool = False) -> tuple[list[str], list[str], np.ndarray]:
    """(class names, paths, labels) of a class-per-folder tree: class names are the sorted subfolders.

    A class folder without image files raises DataError, unless ``allow_empty``:
    then it is left out (no class; see `empty_class_folders`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{what} folder not found: {root}")
    classes = _class_dirs(root)
    if not classes:
        n_loose = sum(1 for p in root.iterdir() if p.is_file() and _is_image(p.name))
        hint = f" ({n_loose} images lie directly in it; put them in one folder per class)" if n_loose else ""
        raise DataError(f"{what} folder {root} has no class subfolders{hint}")
    names: list[str] = []
    paths: list[str] = []
    labels: list[int] = []
    for d in classes:
        files = _images_under(d)
        if not files:
            if allow_empty:
                continue
            raise DataError(f"class folder {d} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        labels += [len(names)] * len(files)
        names.append(d.name)
        paths += files
    if not names:
        raise DataError(f"{what} folder {root}: no class folder holds images ({', '.join(IMAGE_EXTENSIONS)})")
    lab = np.asarray(labels, dtype=np.int32)
    twice = same_file_twice({n: [p for p, k in zip(paths, lab) if k == i] for i, n in enumerate(names)})
    if twice:
        raise DataError(f"{what} folder {root}: image {twice[0]} is in class '{twice[1]}' and in class '{twice[2]}' "
                        "(a symlink or a second path to one file): an image has one class")
    return names, paths, lab


def empty_class_folders(root: str | Path) -> list[str]:
    """Class folders of ``root`` that hold no image files."""
    return [str(d) for d in _class_dirs(Path(root)) if not _images_under(d)]


def is_food101(root: Path) -> bool:
    return (root / "meta").is_dir() and (root / "images").is_dir()


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"Food-101 meta file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"Food-101 meta file {path} is not UTF-8 text") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _plain_name(name: str) -> bool:
    """A single path component: not empty, no separator, not '.' or '..' (cannot leave its folder)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def food101_classes(root: str | Path) -> list[str]:
    root = Path(root)
    names = _read_lines(root / "meta" / "classes.txt")
    if not names:
        raise DataError(f"Food-101 meta file {root / 'meta' / 'classes.txt'} lists no classes")
    if len(set(names)) != len(names):
        raise DataError(f"Food-101 meta file {root / 'meta' / 'classes.txt'} lists a class twice")
    bad = next((n for n in names if not _plain_name(n)), None)
    if bad is not None:
        raise DataError(f"Food-101 meta file {root / 'meta' / 'classes.txt'} names '{bad}', which is not a folder name")
    return names


def food101_split(root: str | Path, split: str, class_names: list[str],
                  missing: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(paths, labels) of meta/<split>.txt; every listed image must exist.

    With a ``missing`` list, listed images that do not exist are left out and
    appended to it as "path: reason" instead of raising.
    """
    root = Path(root)
    meta = root / "meta" / f"{split}.txt"
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for line in _read_lines(meta):
        cls, _, name = line.partition("/")
        if not _plain_name(name):
            # exactly <class>/<id>: nothing may point outside images/<class>/
            raise DataError(f"Food-101 {meta} line '{line}' is not of the form <class>/<image id>")
        if cls not in index:
            raise DataError(f"Food-101 {meta} lists '{line}' of class '{cls}', which meta/classes.txt does not name")
        path = root / "images" / (line if line.lower().endswith(IMAGE_EXTENSIONS) else line + ".jpg")
        paths.append(str(path))
        labels.append(index[cls])
    if not paths:
        raise DataError(f"Food-101 meta file {meta} lists no images")
    # one directory listing per class instead of a stat per image
    listed: dict[str, set[str]] = {}
    keep: list[int] = []
    reached: set[str] = set()
    for i, p in enumerate(paths):
        d, f = os.path.split(p)
        if d not in listed:
            try:
                listed[d] = set(os.listdir(d))
            except (OSError, ValueError):  # ValueError: a NUL byte in a meta line
                if missing is None:
                    raise DataError(f"Food-101 image folder not found: {d} (listed in {meta})") from None
                listed[d] = set()
        if f in listed[d]:
            real = os.path.realpath(p)
            if real in reached:  # listed twice, or a symlink to an image already listed: once only
                continue
            reached.add(real)
            keep.append(i)
        elif missing is None:
            raise DataError(f"Food-101 image not found: {p} (listed in {meta})")
        else:
            missing.append(f"{p}: file not found (listed in {meta})")
    return [paths[i] for i in keep], np.asarray(labels, dtype=np.int32)[keep]
