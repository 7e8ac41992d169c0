"""The ``folder`` layout: one subfolder of images per class; ``dataset.test_path`` / ``val_path`` give separate splits."""
from __future__ import annotations

from pathlib import Path

from ...config import DatasetConfig
from .. import folders
from ..pools import Pool, Source, class_folder_pool, index_pool, root_of, skip_note


def load(cfg: DatasetConfig, image_shape: tuple[int, int, int], notes: list[str], skipped: list[str]) -> Source:
    """The class folders under ``dataset.path`` (class names: the sorted subfolders)."""
    skip = cfg.skip_bad_files
    root = root_of(cfg)
    names, train = class_folder_pool(root, "dataset", None, skip, notes, skipped)
    notes.insert(0, f"class-per-folder dataset {root}: {len(names)} classes, {len(train)} images")
    test = val = None
    separate = {}
    if cfg.test_path:
        _, test = class_folder_pool(Path(cfg.test_path).expanduser(), "test", names, skip, notes, skipped)
        notes.append(f"test split from {cfg.test_path}: {len(test)} images")
        separate["test"] = f"folder {cfg.test_path}"
    if cfg.val_path:
        _, val = class_folder_pool(Path(cfg.val_path).expanduser(), "validation", names, skip, notes, skipped)
        separate["val"] = f"folder {cfg.val_path}"
    skip_note(notes, skipped, 0)
    return Source(names, train, test, val, separate=separate)


def detect(path: Path, given: str) -> bool:
    """Any folder (tried after every other layout)."""
    return path.is_dir()


def load_eval(path: Path, given: str, image_shape: tuple[int, int, int], skip: bool,
              skipped: list[str]) -> tuple[list[str], Pool, str]:
    """Every image of the class folders."""
    names, paths, labels = folders.scan_class_folders(path, "evaluation data", allow_empty=skip)
    what = f"folder {path}"
    return names, index_pool(paths, labels, skip, what, skipped), what
