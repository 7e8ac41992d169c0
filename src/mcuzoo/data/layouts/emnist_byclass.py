"""The ``emnist_byclass`` layout: EMNIST byclass IDX files (gzip or not) or the .mat file (:mod:`mcuzoo.data.emnist`)."""
from __future__ import annotations

from pathlib import Path

from ...config import DatasetConfig
from ...errors import DataError
from .. import emnist
from ..pools import Pool, Source, only_folder_paths, root_of


def load(cfg: DatasetConfig, image_shape: tuple[int, int, int], notes: list[str], skipped: list[str]) -> Source:
    """The train IDX pair (or the .mat file's train set) under ``dataset.path``, and its test set when present."""
    only_folder_paths(cfg)
    root = root_of(cfg, files_ok=True)
    pair = emnist.find_pair(root, "train") if root.is_dir() else None
    test, test_source = None, ""
    if pair is not None:
        images, keep, y = emnist.open_pair(*pair)
        names = emnist.class_names(root, emnist.PREFERRED_PREFIX)
        train = Pool(y, images, keep)
        tpair = emnist.find_pair(root, "test")
        if tpair is not None:
            timages, tkeep, ty = emnist.open_pair(*tpair)
            test = Pool(ty, timages, tkeep)
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
        train = Pool(y, rows, keep)
        if content["test"] is not None:
            trows, tkeep, ty = content["test"]
            test = Pool(ty, trows, tkeep)
            test_source = f"{mat} dataset.test"
            notes.append(f"test split from {mat.name} (dataset.test)")
        notes.insert(0, f"EMNIST byclass from {mat}: {len(y)} training images with labels 0-35")
    return Source(names, train, test, separate={"test": test_source})


def detect(path: Path, given: str) -> bool:
    """An EMNIST .mat file, or a folder holding EMNIST files."""
    if path.is_file():
        return path.suffix.lower() == ".mat"
    return path.is_dir() and emnist.has_emnist_files(path)


def load_eval(path: Path, given: str, image_shape: tuple[int, int, int], skip: bool,
              skipped: list[str]) -> tuple[list[str], Pool, str]:
    """The test set (else the train set) of the IDX pair, or of the .mat file."""
    mat = path if path.is_file() else None
    if mat is None:
        pair = emnist.find_pair(path, "test") or emnist.find_pair(path, "train")
        if pair is not None:
            images, keep, y = emnist.open_pair(*pair)
            return emnist.class_names(path, emnist.PREFERRED_PREFIX), Pool(y, images, keep), f"EMNIST file {pair[0]}"
        mat = emnist.find_mat(path)
    assert mat is not None  # detect saw EMNIST files: an IDX pair or the .mat file
    content = emnist.open_mat(mat)
    rows, keep, y = content["test"] or content["train"]
    return content["names"], Pool(y, rows, keep), f"EMNIST file {mat}"
