"""Labelled images before splitting, as every dataset layout gives them (:mod:`mcuzoo.data.layouts`).

A :class:`Pool` is labels and positions in a source: images in memory (:class:`Memory`) or checked image
files (:class:`Files`). A layout's ``load`` returns a :class:`Source` (its class names and pools);
:mod:`mcuzoo.data.loading` splits, caps and reads them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import folders
from .images import index_files


class Memory:
    """Images in memory at their native size."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def read(self, index: np.ndarray) -> np.ndarray:
        return self.images[index]


class Files:
    """Checked image files (an `images.FileIndex`)."""

    def __init__(self, index):
        self.paths = index.paths
        self.decode = index.decode
        self.sizes = index.sizes


@dataclass
class Pool:
    """Labelled items before splitting: positions ``index`` in a ``source``."""

    labels: np.ndarray
    source: Any
    index: np.ndarray

    def __len__(self):
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "Pool":
        idx = np.asarray(idx, dtype=np.int64)
        return Pool(self.labels[idx], self.source, self.index[idx])


def memory_pool(images: np.ndarray, labels: np.ndarray) -> Pool:
    return Pool(np.asarray(labels, dtype=np.int32), Memory(images), np.arange(len(labels), dtype=np.int64))


def files_pool(index, labels: np.ndarray) -> Pool:
    return Pool(np.asarray(labels, dtype=np.int32), Files(index), np.arange(len(index.paths), dtype=np.int64))


def shown(items: list[str], k: int = 10) -> str:
    return ", ".join(items[:k]) + (f" and {len(items) - k} more" if len(items) > k else "")


def skip_note(notes: list[str], skipped: list[str], before: int) -> None:
    new = skipped[before:]
    if new:
        notes.append(f"skipped {len(new)} bad files (dataset.skip_bad_files): {shown(new, 3)}")


def root_of(cfg: DatasetConfig, files_ok: bool = False) -> Path:
    if not cfg.path:
        raise DataError(f"dataset '{cfg.name}' needs dataset.path")
    root = Path(cfg.path).expanduser()
    if files_ok and root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    return root


def only_folder_paths(cfg: DatasetConfig) -> None:
    for key in ("test_path", "val_path"):
        if getattr(cfg, key):
            raise DataError(f"dataset.{key} is only used by 'folder' datasets, not '{cfg.name}'")


def index_pool(paths: list[str], labels: np.ndarray, skip: bool, what: str, skipped: list[str]) -> Pool:
    """Check the files; the pool of the usable ones (bad ones raise, or are skipped into ``skipped``)."""
    index = index_files(paths, skip_bad=skip, what=what)
    skipped += index.skipped
    return files_pool(index, np.asarray(labels, dtype=np.int32)[index.kept])


def class_folder_pool(path: Path, what: str, names: list[str] | None, skip: bool, notes: list[str],
                       skipped: list[str]) -> tuple[list[str], Pool]:
    """(class names, pool) of a class-per-folder tree; with ``names`` (train's), labels index those."""
    fnames, paths, labels = folders.scan_class_folders(path, what, allow_empty=skip)
    if skip:
        for d in folders.empty_class_folders(path):
            skipped.append(f"{d}: class folder holds no images (left out)")
            notes.append(f"{what} class folder {d} holds no images: left out")
    if names is not None:
        unknown = [n for n in fnames if n not in names]
        if unknown:
            raise DataError(f"{what} folder {path} has classes not in the training folder: {shown(unknown)}")
        remap = np.array([names.index(n) for n in fnames], dtype=np.int32)
        labels = remap[labels]
    return fnames, index_pool(paths, labels, skip, f"{what} {path}", skipped)


@dataclass
class Source:
    """What a layout's ``load`` gives: class names, the training pool and, where the dataset has them, its own
    test / validation pools. ``separate`` names where a given test / val pool comes from (such splits must hold
    every class); ``cap_test``: whether ``dataset.max_per_class`` also caps the test pool."""

    names: list[str]
    train: "Pool"
    test: Optional["Pool"] = None
    val: Optional["Pool"] = None
    separate: dict[str, str] = field(default_factory=dict)
    cap_test: bool = True
