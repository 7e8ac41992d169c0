"""EMNIST byclass in its distribution formats: gzip IDX files or the MATLAB ``emnist-byclass.mat``.

IDX: ``<root>/emnist-byclass-train-images-idx3-ubyte.gz`` (magic 0x00000803,
dims N, 28, 28), ``...-train-labels-idx1-ubyte.gz`` (magic 0x00000801, dim N),
optionally the ``-test-`` pair and ``emnist-byclass-mapping.txt`` (lines
``<label> <ascii code>``). Every image is stored transposed.

MATLAB: ``emnist-byclass.mat`` (the official "matlab.zip"), a struct
``dataset`` with ``train`` and ``test`` (each ``images``: N x 784 uint8,
``labels``: N x 1, ``writers``) and ``mapping`` (62 x 2: label, ASCII code).
Each row of ``images`` is a 28x28 image flattened in MATLAB's column-major
(Fortran) order, so ``row.reshape(28, 28)`` (C order) gives the image
transposed, exactly like the IDX files, and ``row.reshape(28, 28, order="F")``
gives it upright: the loader transposes both the same way. v7.3 (HDF5) files
are not read (scipy cannot); the official file is v5.

Only labels 0-35 (digits and upper-case letters, the 36 classes of ST MNIST)
are kept.

Memory: IDX images are streamed (the gzip is decompressed in 6 MB chunks) and
only the images a split keeps are written, upright, into one uint8 buffer:
for the full byclass set (697,932 + 116,323 images, 533k + 89k with labels
0-35) that is about 490 MB, the only large allocation. The .mat file cannot be
streamed: scipy holds its arrays (about 640 MB for byclass) while the kept
images are copied out, so loading it peaks near 1.1 GB.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, first_line

NUM_CLASSES = 36
DEFAULT_NAMES = [str(d) for d in range(10)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
PREFERRED_PREFIX = "emnist-byclass"
MAT_NAME = "emnist-byclass.mat"
_CHUNK = 8192  # images per streamed read


def _open(path: Path):
    """A binary file object, decompressing gzip transparently."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"EMNIST file not found: {path}") from None
    except OSError as e:
        raise DataError(f"EMNIST file {path} cannot be read ({e.strerror or e})") from None
    if f.read(2) == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")
    f.seek(0)
    return f


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _gzip_error(path: Path, e: Exception) -> DataError:
    return DataError(f"EMNIST file {path} is not a readable gzip file (truncated or corrupt: {e})")


def _read_exact(f, n: int, path: Path) -> bytes:
    """Up to ``n`` bytes, read in pieces: a header may claim more than the file holds."""
    parts, got = [], 0
    try:
        while got < n:
            piece = f.read(min(n - got, 16 * 2**20))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise _gzip_error(path, e) from None
    return b"".join(parts)


def _header(f, path: Path, magic: int) -> tuple[int, ...]:
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    head = _read_exact(f, 4, path)
    if len(head) < 4:
        raise DataError(f"EMNIST {kind} file {path} is truncated (no IDX header)")
    got = int.from_bytes(head, "big")
    if got != magic:
        raise DataError(f"EMNIST {kind} file {path} has magic 0x{got:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    raw = _read_exact(f, 4 * ndim, path)
    if len(raw) < 4 * ndim:
        raise DataError(f"EMNIST {kind} file {path} is truncated (incomplete IDX header)")
    return tuple(int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(ndim))


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse a whole IDX file (optionally gzip): big-endian magic and dims, then uint8 data."""
    path = Path(path)
    with _open(path) as f:
        dims = _header(f, path, magic)
        size = int(np.prod(dims, dtype=np.int64))
        data = _read_exact(f, size, path)
    if len(data) < size:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"EMNIST {kind} file {path} is truncated: header says {'x'.join(map(str, dims))} "
                        f"({size} bytes), found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


class IdxImages:
    """The images of an IDX file, read on demand in one streaming pass (`read`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with _open(self.path) as f:
            dims = _header(f, self.path, IMAGES_MAGIC)
        if len(dims) != 3:  # pragma: no cover - the magic fixes ndim = 3
            raise DataError(f"EMNIST images file {self.path} must hold N x H x W images, got dims {dims}")
        self.count, self.rows, self.cols = dims
        if not (1 <= self.rows <= 1024 and 1 <= self.cols <= 1024):
            raise DataError(f"EMNIST images file {self.path} has images of {self.rows}x{self.cols} pixels in its "
                            f"header (EMNIST's are 28x28; 1 to 1024 is accepted)")
        if not _is_gzip(self.path):
            have = self.path.stat().st_size - 16
            if have < self.count * self.rows * self.cols:
                raise DataError(f"EMNIST images file {self.path} is truncated: header says "
                                f"{self.count}x{self.rows}x{self.cols}, the file holds {have} bytes of pixels")

    def __len__(self) -> int:
        return self.count

    def read(self, index: np.ndarray) -> np.ndarray:
        """uint8 (len(index), 28, 28, 1) upright images at ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.cols, self.rows, 1), dtype=np.uint8)
        if not len(index):
            return out
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        per = self.rows * self.cols
        chunk_n = max(1, min(_CHUNK, 8 * 2**20 // per))
        buf = np.empty(chunk_n * per, dtype=np.uint8)
        with _open(self.path) as f:
            _header(f, self.path, IMAGES_MAGIC)
            start, pos = 0, 0
            while pos < len(wanted):
                n = min(chunk_n, self.count - start)
                view = memoryview(buf)[:n * per]  # type: ignore[arg-type]  # an ndarray is a buffer
                try:
                    got = f.readinto(view)
                except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
                    raise _gzip_error(self.path, e) from None
                while got < n * per:  # readinto may return short reads
                    try:
                        more = f.readinto(view[got:])
                    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
                        raise _gzip_error(self.path, e) from None
                    if not more:
                        raise DataError(
                            f"EMNIST images file {self.path} is truncated: header says "
                            f"{self.count}x{self.rows}x{self.cols}, data ends at image {start + got // per}")
                    got += more
                end = pos + int(np.searchsorted(wanted[pos:], start + n))
                if end > pos:
                    chunk = buf[:n * per].reshape(n, self.rows, self.cols)
                    out[order[pos:end], ..., 0] = chunk[wanted[pos:end] - start].transpose(0, 2, 1)
                pos = end
                start += n
        return out


class RowImages:
    """Images as flat rows in Fortran order (the .mat layout), held in memory."""

    def __init__(self, rows: np.ndarray, side: int = 28):
        self.rows = rows
        self.side = side

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        s = self.side
        out = np.empty((len(index), s, s, 1), dtype=np.uint8)
        for i in range(0, len(index), _CHUNK):
            # C-order reshape gives the transposed image; transposing makes it upright
            out[i:i + _CHUNK, ..., 0] = self.rows[index[i:i + _CHUNK]].reshape(-1, s, s).transpose(0, 2, 1)
        return out


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


def find_mat(root: Path) -> Path | None:
    """The byclass .mat file: ``root`` itself when it is a .mat file, else ``root/emnist-byclass.mat``."""
    if root.is_file() and root.suffix.lower() == ".mat":
        return root
    if root.is_dir():
        if (root / MAT_NAME).is_file():
            return root / MAT_NAME
        cands = sorted(root.glob("emnist-*.mat"))
        if cands:
            return cands[0]
    return None


def has_emnist_files(root: Path) -> bool:
    return any(root.glob("*-images-idx3-ubyte*")) or find_mat(root) is not None


def _names_from_mapping(pairs, source) -> list[str]:
    names = list(DEFAULT_NAMES)
    for label, code in pairs:
        if 0 <= label < NUM_CLASSES:
            if not 0 < code < 0x110000:
                raise DataError(f"EMNIST mapping in {source} maps label {label} to {code}, which is no character code")
            names[label] = chr(code)
    if len(set(names)) != len(names):
        raise DataError(f"EMNIST mapping in {source} maps two labels to the same character")
    return names


def class_names(root: Path, prefix: str | None = None) -> list[str]:
    """Names of labels 0-35 from ``*-mapping.txt`` (label -> chr(ascii)), else 0-9, A-Z."""
    maps = sorted(root.glob("*mapping.txt"))
    if prefix:
        maps.sort(key=lambda p: not p.name.startswith(prefix))
    if not maps:
        return list(DEFAULT_NAMES)
    pairs = []
    try:
        for line in maps[0].read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pairs.append((int(parts[0]), int(parts[1])))
    except ValueError:
        raise DataError(f"EMNIST mapping file {maps[0]} has a line that is not '<label> <ascii code>'") from None
    return _names_from_mapping(pairs, maps[0])


def open_pair(images_path: Path, labels_path: Path) -> tuple[IdxImages, np.ndarray, np.ndarray]:
    """(lazy images, positions of labels 0-35, their int32 labels); headers and counts checked, no pixels read."""
    images = IdxImages(images_path)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"EMNIST count mismatch: {images_path.name} has {len(images)} images, "
                        f"{labels_path.name} has {len(labels)} labels")
    keep = np.flatnonzero(labels < NUM_CLASSES)
    return images, keep, labels[keep].astype(np.int32)


def load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N,28,28,1) upright (transposed back) and int32 labels, labels 0-35 only."""
    images, keep, labels = open_pair(images_path, labels_path)
    return images.read(keep), labels


def open_mat(path: Path) -> dict:
    """{'train': (RowImages, keep, labels), 'test': ... or None, 'names': [...]} from an EMNIST .mat file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        raise DataError(f"EMNIST file {path} is a MATLAB v7.3 (HDF5) file, which cannot be read; "
                        f"use the official v5 .mat or the IDX files") from None
    except FileNotFoundError:
        raise DataError(f"EMNIST file not found: {path}") from None
    except Exception as e:
        raise DataError(f"EMNIST file {path} is not a readable .mat file ({first_line(e, 120)})") from None

    def field(node, name, what):
        try:
            return node[name][0, 0]
        except (KeyError, ValueError, IndexError, TypeError):
            raise DataError(f"EMNIST file {path} has no '{what}' (expected dataset.train.images / labels)") from None

    if "dataset" not in mat:
        raise DataError(f"EMNIST file {path} has no 'dataset' struct (not an EMNIST .mat file?)")
    ds = mat["dataset"]
    out: dict = {}
    for split in ("train", "test"):
        try:
            node = ds[split][0, 0]
        except (KeyError, ValueError, IndexError):
            if split == "train":
                raise DataError(f"EMNIST file {path} has no 'dataset.train'") from None
            out[split] = None
            continue
        rows = np.asarray(field(node, "images", f"dataset.{split}.images"))
        labels = np.asarray(field(node, "labels", f"dataset.{split}.labels")).reshape(-1)
        if rows.ndim != 2 or rows.shape[1] != 784:
            raise DataError(f"EMNIST file {path}: dataset.{split}.images must be N x 784, got {rows.shape}")
        if len(rows) != len(labels):
            raise DataError(f"EMNIST count mismatch in {path}: dataset.{split} has {len(rows)} images "
                            f"and {len(labels)} labels")
        keep = np.flatnonzero(labels < NUM_CLASSES)
        out[split] = (RowImages(rows.astype(np.uint8, copy=False)), keep, labels[keep].astype(np.int32))
    names = list(DEFAULT_NAMES)
    try:
        mapping = np.asarray(ds["mapping"][0, 0]).reshape(-1, 2)
        names = _names_from_mapping([(int(a), int(b)) for a, b in mapping], path)
    except (KeyError, ValueError, IndexError):
        pass
    out["names"] = names
    return out
