"""Image files: an up-front check of every file, and the PIL decoder for what TensorFlow gets wrong.

`index_files` opens every file once before training (in a thread pool) so that
an epoch never stops at a bad file. Per file it reads the header with PIL
(format, mode, size, EXIF orientation), refuses images over PIL's pixel
limit, then: a PNG for TF is verified chunk by chunk (every CRC and the IEND
chunk: the whole file is read, nothing decompressed); a JPEG for TF has its
marker structure walked (`jpeg_structure_error`: the whole file is read, one
numpy pass). Files for the PIL decoder are decoded in full, by the same
function the pipeline uses. Corrupt bytes inside a JPEG's entropy-coded
data are not detected, but they do not stop TF's decoder either (libjpeg
warns and decodes garbage pixels); only a PNG whose deflate stream is corrupt
under correct CRCs (crafted) could still stop an epoch.

Cost: 0.25-0.35 ms per 256 px JPEG on 2 shared cores, everything else of
`load_dataset` included (benchmarks/data_benchmark.py: 25,250 files in 6.5-9
s), so about half a minute for Food-101's 101,000 files; PNG, GIF, BMP and
alpha images cost a full decode or a full read each.

It also decides how each file is decoded in the tf.data pipeline (the
``decode`` code of a path-based `Split`):

- ``1``-``8``: TensorFlow's decoder, then the EXIF orientation ``1``-``8``
  (``1``: as stored) applied with TF ops; plain 8/16-bit JPEG (grey or RGB),
  PNG without transparency (palette, 1-16 bit). TF's ``decode_image``
  ignores EXIF orientation, so the orientation read here is applied after
  decoding.
- ``0``: PIL (`pil_decode_rgb`, in a ``tf.numpy_function``) for everything else:
  CMYK / YCCK JPEG, images with an alpha channel or a transparent colour
  (composited over black, the colour letterboxing pads with), GIF and BMP
  (TF ignores BMP palettes and refuses some files PIL reads), 32-bit integer
  and float images, and formats TF cannot read (TIFF, ...).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, first_line

PIL_DECODE = 0
_ORIENTATION_TAG = 0x0112
_TF_MODES = {
    "JPEG": ("L", "RGB"),
    "MPO": ("L", "RGB"),
    "PNG": ("L", "RGB", "P", "1", "I;16", "I;16B", "I;16L"),
}


@dataclass
class FileInfo:
    """What `inspect_file` learnt: ``error`` is None for a usable image."""

    decode: int = PIL_DECODE
    height: int = 0
    width: int = 0
    error: str | None = None


def _orientation(info: dict) -> int:
    raw = info.get("exif")
    if not raw:
        return 1
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(raw)
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block does not make the image unusable
        return 1
    return value if 1 <= value <= 8 else 1


_STANDALONE = set(range(0xD0, 0xD8)) | {0x01, 0xD8}
_VALID_MARKERS = set(range(0xC0, 0xFF)) | {0x01}


def jpeg_structure_error(data: bytes) -> str | None:
    """Why libjpeg would stop on this JPEG's marker structure, or None.

    Walks the marker segments from SOI to EOI (every length must fit, every
    marker must be one libjpeg knows) and scans the entropy-coded data after
    each SOS for stray markers (0xFF followed by anything but 0x00 stuffing,
    fill or RST0-7). Fast: one numpy pass over the file's bytes.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return "has no JPEG start marker"
    arr = np.frombuffer(data, dtype=np.uint8)
    pos = 2
    while True:
        while pos < n and data[pos] == 0xFF and pos + 1 < n and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 1 >= n:
            return "is truncated (no end-of-image marker)"
        m = data[pos + 1]
        if data[pos] != 0xFF or m == 0x00:  # extraneous bytes: libjpeg skips them (with a warning)
            nxt = data.find(b"\xff", pos + 1)
            if nxt < 0:
                return "is truncated (no end-of-image marker)"
            pos = nxt
            continue
        if m == 0xD9:
            return None
        if m not in _VALID_MARKERS:
            return f"is corrupt (unknown JPEG marker 0x{m:02x} at byte {pos})"
        if m in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > n:
            return "is truncated (inside a JPEG marker)"
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > n:
            return f"is corrupt or truncated (JPEG marker 0x{m:02x} at byte {pos} runs past the end)"
        pos += 2 + length
        if m == 0xDA:  # entropy-coded data up to the next real marker
            ff = np.flatnonzero(arr[pos:n - 1] == 0xFF) + pos
            after = arr[ff + 1]
            real = ff[(after != 0x00) & (after != 0xFF) & ((after < 0xD0) | (after > 0xD7))]
            if not len(real):
                return "is truncated (no end-of-image marker)"
            pos = int(real[0])


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_data_error(path: str) -> str | None:
    """Why the pixel data of a PNG does not fill the size its header declares (None when it does).

    Pillow pads a short image quietly and TF's decoder fails with no file name, so the IDAT stream is
    inflated here (streamed: memory stays bounded) and its length compared with what the header implies.
    """
    import struct
    import zlib

    with open(path, "rb") as f:
        data = f.read()
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR" and len(body) >= 13:
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    if header is None:
        return "is corrupt (no PNG header)"
    w, h, depth, color, _, _, interlace = header
    bits = _PNG_CHANNELS.get(color, 1) * depth

    def rows_bytes(pw: int, ph: int) -> int:
        return 0 if pw == 0 or ph == 0 else ph * (1 + (pw * bits + 7) // 8)

    if interlace:
        passes = ((8, 8, 0, 0), (8, 8, 4, 0), (4, 8, 0, 4), (4, 4, 2, 0), (2, 4, 0, 2), (2, 2, 1, 0), (1, 2, 0, 1))
        expected = sum(rows_bytes((w - x0 + dx - 1) // dx if w > x0 else 0, (h - y0 + dy - 1) // dy if h > y0 else 0)
                       for dx, dy, x0, y0 in passes)
    else:
        expected = rows_bytes(w, h)
    inflater, got = zlib.decompressobj(), 0
    try:
        for part in idat:
            chunk = inflater.decompress(part, 1 << 20)
            got += len(chunk)
            while inflater.unconsumed_tail and got <= expected:
                chunk = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
                got += len(chunk)
            if got > expected:
                break
    except zlib.error as e:
        return f"is corrupt (pixel data: {e})"
    if got < expected:
        return f"is truncated (pixel data for less than its header's {w}x{h} pixels)"
    return None


def inspect_file(path: str) -> FileInfo:
    """Check one image file cheaply and pick its decoder; never raises."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return FileInfo(error="file not found")
    except OSError as e:
        return FileInfo(error=f"cannot be read ({e.strerror or e})")
    if size == 0:
        return FileInfo(error="is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            fmt, mode = im.format or "", im.mode
            width, height = im.size
            orientation = _orientation(im.info)
            transparent = "transparency" in im.info or mode in ("RGBA", "LA", "PA", "RGBa", "La")
            if width < 1 or height < 1:
                return FileInfo(error=f"has no pixels ({width}x{height})")
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:  # PIL only warns up to twice its limit; decoding it would not
                return FileInfo(error=f"is too large to decode ({width}x{height} pixels, more than {limit:,})")
            tf_ok = mode in _TF_MODES.get(fmt, ()) and not transparent
            if not tf_ok:
                pass  # decoded in full below, by the very function the pipeline will use
            elif fmt == "PNG":
                im.verify()  # every chunk's CRC and the IEND chunk: reads the file, decompresses nothing
            else:
                with open(path, "rb") as f:
                    problem = jpeg_structure_error(f.read())
                if problem:
                    return FileInfo(error=problem)
        if not tf_ok:
            _pil_rgb(path)
        elif fmt == "PNG":  # pixel data for fewer rows than the header declares: TF's decoder fails without the name
            problem = png_data_error(path)
            if problem:
                return FileInfo(error=problem)
    except UnidentifiedImageError:
        return FileInfo(error="is not an image (no known image format inside)")
    except Image.DecompressionBombError as e:
        return FileInfo(error=f"is too large to decode ({e})")
    except Exception as e:  # whatever PIL raises on a broken file
        msg = first_line(e, None)
        if "truncated" in msg:
            return FileInfo(error=f"is truncated (less pixel data than its header's {width}x{height})"
                            if "width" in locals() else "is truncated")
        return FileInfo(error=f"is corrupt ({msg[:120]})")
    if orientation >= 5:
        width, height = height, width
    decode = orientation if tf_ok else PIL_DECODE
    return FileInfo(decode=decode, height=height, width=width)


@dataclass
class FileIndex:
    """The usable files of a list, with their decoders and (oriented) sizes, and what was skipped."""

    paths: list[str]
    decode: np.ndarray  # int8 per file, see the module docstring
    sizes: np.ndarray  # int32 (N, 2): height, width as displayed
    kept: np.ndarray  # positions of ``paths`` in the list that was indexed
    skipped: list[str]  # "path: reason" per bad file


def _workers() -> int:
    return max(4, min(32, 4 * (os.cpu_count() or 2)))


def inspect_files(paths: list[str]) -> list[FileInfo]:
    """`inspect_file` of every path, in order, in a thread pool (file reads overlap; parsing holds the GIL)."""
    if len(paths) < 64:
        return [inspect_file(p) for p in paths]
    chunk = 256
    parts = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        out: list[FileInfo] = []
        for res in pool.map(lambda ps: [inspect_file(p) for p in ps], parts):
            out += res
    return out


def index_files(paths: list[str], skip_bad: bool = False, what: str = "dataset") -> FileIndex:
    """Check every file; a bad one raises a one-line DataError naming it, or is skipped with ``skip_bad``."""
    infos = inspect_files(list(paths))
    bad = [i for i, info in enumerate(infos) if info.error is not None]
    if bad and not skip_bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else ""
        raise DataError(f"bad image file in {what}: {paths[first]} {infos[first].error}{more}; "
                        f"set dataset.skip_bad_files: true to skip bad files")
    kept = np.array([i for i, info in enumerate(infos) if info.error is None], dtype=np.int64)
    return FileIndex(
        paths=[paths[i] for i in kept],
        decode=np.array([infos[i].decode for i in kept], dtype=np.int8),
        sizes=np.array([(infos[i].height, infos[i].width) for i in kept], dtype=np.int32).reshape(-1, 2),
        kept=kept,
        skipped=[f"{paths[i]}: {infos[i].error}" for i in bad],
    )


def _pil_rgb(path: str) -> np.ndarray:
    """uint8 (H, W, 3) of any image PIL reads (raises what PIL raises)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)  # type: ignore[assignment]  # an Image, no longer the file
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            a = np.asarray(im, dtype=np.float64)
            if mode != "F" and (mode.startswith("I;16") or im.format == "PNG" or a.max() > 255):
                a = a / 257.0  # 16-bit range
            g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
            return np.repeat(g[..., None], 3, axis=-1)
        if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
            rgb = rgba[..., :3] * (rgba[..., 3:] / 255.0)
            return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def pil_decode_rgb(path) -> np.ndarray:
    """uint8 (H, W, 3) of any image PIL reads: EXIF orientation applied, alpha composited over black,
    16-bit and 32-bit grey scaled to 8 bits, CMYK and palettes converted, first frame of animations."""
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")
    try:
        return _pil_rgb(path)
    except Exception as e:  # checked up front, so this means the file changed since
        raise DataError(f"cannot decode image {path}: {e}") from None
