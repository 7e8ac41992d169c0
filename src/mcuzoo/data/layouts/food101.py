"""The ``food101`` layout: ``images/<class>/*.jpg`` with ``meta/classes.txt``, ``meta/train.txt`` and ``meta/test.txt``
(read by :func:`mcuzoo.data.folders.food101_classes` and :func:`~mcuzoo.data.folders.food101_split`)."""
from __future__ import annotations

from pathlib import Path

from ...config import DatasetConfig
from ...errors import DataError
from .. import folders
from ..pools import Pool, Source, index_pool, only_folder_paths, root_of, skip_note


def load(cfg: DatasetConfig, image_shape: tuple[int, int, int], notes: list[str], skipped: list[str]) -> Source:
    """The images of meta/train.txt, and those of meta/test.txt as the test split when it exists."""
    skip = cfg.skip_bad_files
    only_folder_paths(cfg)
    root = root_of(cfg)
    if not (root / "meta").is_dir():
        raise DataError(f"Food-101 meta folder not found: {root / 'meta'}")
    names = folders.food101_classes(root)
    paths, labels = folders.food101_split(root, "train", names, skipped if skip else None)
    train = index_pool(paths, labels, skip, f"Food-101 {root}", skipped)
    notes.append(f"Food-101 {root}: {len(names)} classes, {len(train)} images in meta/train.txt")
    test = None
    if (root / "meta" / "test.txt").is_file():
        tpaths, tlabels = folders.food101_split(root, "test", names, skipped if skip else None)
        test = index_pool(tpaths, tlabels, skip, f"Food-101 {root}", skipped)
        notes.append(f"test split from meta/test.txt: {len(test)} images")
    skip_note(notes, skipped, 0)
    return Source(names, train, test, separate={"test": str(root / "meta" / "test.txt")})


def detect(path: Path, given: str) -> bool:
    """A folder with a ``meta`` folder."""
    return path.is_dir() and (path / "meta").is_dir()


def load_eval(path: Path, given: str, image_shape: tuple[int, int, int], skip: bool,
              skipped: list[str]) -> tuple[list[str], Pool, str]:
    """The images of meta/test.txt (else meta/train.txt)."""
    names = folders.food101_classes(path)
    split = "test" if (path / "meta" / "test.txt").is_file() else "train"
    paths, labels = folders.food101_split(path, split, names, skipped if skip else None)
    what = f"Food-101 {path / 'meta' / (split + '.txt')}"
    return names, index_pool(paths, labels, skip, what, skipped), what
