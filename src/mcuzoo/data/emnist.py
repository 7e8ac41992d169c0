"""EMNIST in its distribution format: gzip IDX files, images stored transposed.

``<root>/emnist-byclass-train-images-idx3-ubyte.gz`` (magic 0x00000803, dims
N, 28, 28), ``...-train-labels-idx1-ubyte.gz`` (magic 0x00000801, dim N),
optionally the ``-test-`` pair and ``emnist-byclass-mapping.txt`` (lines
``<label> <ascii code>``). Only labels 0-35 (digits and upper-case letters, the
36 classes of ST MNIST) are kept.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

NUM_CLASSES = 36
DEFAULT_NAMES = [str(d) for d in range(10)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
PREFERRED_PREFIX = "emnist-byclass"


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"EMNIST file not found: {path}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"EMNIST file {path} is not a readable gzip file (truncated or corrupt: {e})") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse an IDX file (optionally gzip): big-endian magic and dims, then uint8 data."""
    path = Path(path)
    data = _read_bytes(path)
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise DataError(f"EMNIST {kind} file {path} is truncated (no IDX header)")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise DataError(f"EMNIST {kind} file {path} has magic 0x{got:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"EMNIST {kind} file {path} is truncated (incomplete IDX header)")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header < size:
        raise DataError(f"EMNIST {kind} file {path} is truncated: header says {'x'.join(map(str, dims))} "
                        f"({size} bytes), found {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(dims)


def find_pair(root: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) files of ``split`` ('train' or 'test') in root, or None when absent."""
    cands = sorted(root.glob(f"*{split}-images-idx3-ubyte*"))
    if not cands:
        return None
    cands.sort(key=lambda p: (not p.name.startswith(PREFERRED_PREFIX), not p.name.endswith(".gz"), p.name))
    images = cands[0]
    labels = images.with_name(images.name.replace("-images-idx3-", "-labels-idx1-"))
    if not labels.is_file():
        raise DataError(f"EMNIST labels file not found: {labels} (beside {images.name})")
    return images, labels


def has_emnist_files(root: Path) -> bool:
    return any(root.glob("*-images-idx3-ubyte*"))


def class_names(root: Path, prefix: str | None = None) -> list[str]:
    """Names of labels 0-35 from ``*-mapping.txt`` (label -> chr(ascii)), else 0-9, A-Z."""
    maps = sorted(root.glob("*mapping.txt"))
    if prefix:
        maps.sort(key=lambda p: not p.name.startswith(prefix))
    if not maps:
        return list(DEFAULT_NAMES)
    names = list(DEFAULT_NAMES)
    try:
        for line in maps[0].read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            label, code = int(parts[0]), int(parts[1])
            if 0 <= label < NUM_CLASSES:
                names[label] = chr(code)
    except ValueError:
        raise DataError(f"EMNIST mapping file {maps[0]} has a line that is not '<label> <ascii code>'") from None
    if len(set(names)) != len(names):
        raise DataError(f"EMNIST mapping file {maps[0]} maps two labels to the same character")
    return names


def load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N,28,28,1) upright (transposed back) and int32 labels, labels 0-35 only."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise DataError(f"EMNIST images file {images_path} must hold N x H x W images, got dims {images.shape}")
    if len(images) != len(labels):
        raise DataError(f"EMNIST count mismatch: {images_path.name} has {len(images)} images, "
                        f"{labels_path.name} has {len(labels)} labels")
    keep = np.flatnonzero(labels < NUM_CLASSES)
    # EMNIST stores every image transposed
    out = np.ascontiguousarray(images[keep].transpose(0, 2, 1))[..., None]
    return out, labels[keep].astype(np.int32)
