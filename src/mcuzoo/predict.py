"""``mcuzoo predict``: top-k classes of image files with a .keras, .tflite or .onnx model.

Entry point: :func:`predict`. Inputs are image files or folders (searched
recursively for image files). Each image is decoded with Pillow, turned upright
from its EXIF orientation, brought to 8-bit grey or RGB whatever its mode
(palette, alpha, 16-bit, CMYK, ...), converted to the model's channels and
resized to the model's input exactly as the training pipeline does (the
interpolation and aspect of ``model_info.json``, bilinear and fit by default), then fed as raw
uint8 pixels to :func:`mcuzoo.models.runner.open_model`'s ``predict``, which applies
the model's own preprocessing.

Class names come from ``model_info.json`` beside the model; without it the
classes are shown as indices, with a note.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, McuzooError, first_line

__all__ = ["Prediction", "Predictions", "predict", "load_image", "collect_images", "register_cli", "IMAGE_EXTENSIONS"]

#: Extensions searched in folders (a file named on the command line is tried whatever its extension).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


@dataclass
class Prediction:
    """The top-k classes of one image, best first."""

    file: str
    labels: list[str]
    indices: list[int]
    scores: list[float]

    @property
    def top(self) -> list[tuple[str, float]]:
        return list(zip(self.labels, self.scores))

    def to_json(self) -> dict:
        return {"file": self.file, "top": [{"class": lab, "index": i, "confidence": round(float(s), 6)}
                                           for lab, i, s in zip(self.labels, self.indices, self.scores)]}


class Predictions(list):
    """A list of :class:`Prediction` with what else the run found: ``notes`` and ``skipped`` files."""

    def __init__(self, items=(), notes=None, skipped=None, backend: str = "", class_names_source: str = ""):
        super().__init__(items)
        self.notes: list[str] = list(notes or [])
        self.skipped: list[tuple[str, str]] = list(skipped or [])  # (file, reason)
        self.backend = backend
        self.class_names_source = class_names_source
        self.kernels = ""  # a .tflite's: exact, xnnpack or builtin (see mcuzoo.runtime)


# ---------------------------------------------------------------------------
# inputs


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders searched recursively (sorted).

    A missing path or a folder without images is a :class:`DataError`.
    """
    if not inputs:
        raise DataError("no image file or folder given")
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not found:
                raise DataError(f"folder {p} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        elif p.is_file():
            found = [p]
        elif p.exists():
            raise DataError(f"{p} is neither a file nor a folder")
        else:
            raise DataError(f"no such file or folder: {p}")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def _to_8bit(img) -> np.ndarray:
    """A Pillow image of any mode -> uint8 (H, W, 1) grey or (H, W, 3) RGB. Alpha is dropped, as in training."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0  # 0..65535 -> 0..255
        elif mode == "I":
            a = a / 257.0 if a.max(initial=0) > 255 else a  # 16-bit PNGs open as "I" in older Pillow
        elif a.max(initial=0) <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)[..., None]
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)[..., None]
    if mode in ("LA", "La"):
        return np.asarray(img.convert("L"), dtype=np.uint8)[..., None]
    if mode in ("P", "PA"):
        img = img.convert("RGBA")  # expands the palette (and its transparency); alpha dropped below
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(path: str | Path, image_shape: tuple[int, int, int], interpolation: str = "bilinear",
               aspect: str = "fit") -> np.ndarray:
    """uint8 (H, W, C) pixels of one image file at ``image_shape``; DataError naming the file if unreadable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from .data.core import resize_images
    from .data.images import inspect_file

    path = Path(path)
    # the dataset loader's checks, from the header where it can: lying sizes, images over Pillow's pixel limit
    # (below twice it Pillow only warns), broken JPEGs
    problem = inspect_file(str(path)).error
    if problem:
        raise DataError(f"{path} {problem}")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not later
            try:
                im = ImageOps.exif_transpose(im)  # type: ignore[assignment]  # an Image, no longer the file
            except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as stored
                pass
            pixels = _to_8bit(im)
    except UnidentifiedImageError:
        raise DataError(f"{path} is not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path} is too large to decode ({first_line(e, 160)})") from None
    except (OSError, ValueError, SyntaxError) as e:
        msg = first_line(e, 160)
        raise DataError(f"{path} is not a readable image ({msg})") from None
    if pixels.ndim != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise DataError(f"{path} has no pixels")
    return resize_images(pixels[None], image_shape, interpolation, aspect)[0]


# ---------------------------------------------------------------------------
# prediction


def _as_probabilities(y: np.ndarray) -> tuple[np.ndarray, bool]:
    """Softmax the rows unless they already are probabilities; (probs, softmax applied)."""
    y = np.asarray(y, dtype=np.float64)
    sums = y.sum(axis=1)
    if np.all(y >= -1e-6) and np.all(np.abs(sums - 1.0) < 2e-2):
        return y, False
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), True


def predict(model_path: str | Path, inputs: list[str], top_k: int = 5, *, skip_bad: bool = False,
            rescale: float | None = None, offset: float | None = None, batch_size: int = 32,
            runtime: str = "exact") -> Predictions:
    """Top-``top_k`` classes of every image in ``inputs`` (files or folders) with the model at ``model_path``.

    Returns a :class:`Predictions` (a list of :class:`Prediction`, in input order). An
    unreadable image raises a one-line error naming it; with ``skip_bad`` it is
    listed in ``.skipped`` instead. ``rescale`` / ``offset`` override the
    preprocessing of ``model_info.json`` (needed for float models without it). A .tflite runs on
    ``runtime``'s kernels (MCU-exact by default, or ``xnnpack``); ``.kernels`` of the result says which ran.
    """
    from .models.runner import kernels_of, open_model
    from .rundir import read_model_info

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise McuzooError(f"--top-k must be a positive integer, got {top_k!r}")
    files = collect_images(list(inputs))  # a missing path fails before the model is loaded
    info = read_model_info(model_path)
    rescale = rescale if rescale is not None else (info.rescale if info else None)
    offset = offset if offset is not None else (info.offset if info else 0.0)
    backend, shape, run = open_model(model_path, rescale, offset, batch_size, runtime, 1)
    if len(shape) != 3:
        raise McuzooError(f"{model_path}: input shape {shape} is not (height, width, channels)")
    interpolation = info.interpolation if info else "bilinear"
    aspect = info.aspect if info else "fit"
    notes: list[str] = []
    if info is None:
        notes.append(f"no model_info.json beside {model_path}: classes are shown as indices")

    images, kept, skipped = _read_images(files, shape, interpolation, aspect, skip_bad)
    out = Predictions(notes=notes, skipped=skipped, backend=backend,
                      class_names_source="model_info.json" if info else "indices")
    softmaxed, names = _predict_batches(model_path, run, images, kept, info, top_k, batch_size, out)
    out.kernels = kernels_of(run)
    if softmaxed:
        out.notes.append("the model's outputs are not probabilities: a softmax was applied")
    if top_k > len(names):
        out.notes.append(f"--top-k {top_k} is more than the {len(names)} classes: showing all")
    return out


def _read_images(files: list[Path], shape, interpolation: str, aspect: str, skip_bad: bool):
    """(images, their files, (file, reason) of those skipped): an unreadable file fails unless ``skip_bad``."""
    images, kept, skipped = [], [], []
    for f in files:
        try:
            images.append(load_image(f, shape, interpolation, aspect))
            kept.append(f)
        except DataError as e:
            if not skip_bad:
                raise
            skipped.append((str(f), str(e)))
    if not kept:
        raise DataError(f"none of the {len(files)} files could be read as an image: {skipped[0][1]}")
    return images, kept, skipped


def _predict_batches(model_path, run, images: list, kept: list[Path], info, top_k: int, batch_size: int,
                     out: Predictions) -> tuple[bool, list[str]]:
    """Run the model on ``images`` batch by batch, appending each image's top-k to ``out``.

    Returns whether a softmax was applied and the class names.
    """
    softmaxed = False
    names: list[str] = []
    for i in range(0, len(kept), batch_size):
        batch = np.stack(images[i:i + batch_size])
        y = np.asarray(run(batch))
        if y.ndim != 2 or y.shape[0] != len(batch):
            raise McuzooError(f"{model_path}: expected one row of class scores per image, got shape {y.shape}")
        names = info.class_names if info else [str(j) for j in range(y.shape[1])]
        if len(names) != y.shape[1]:
            raise McuzooError(f"{model_path} gives {y.shape[1]} outputs but model_info.json lists {len(names)} classes")
        probs, sm = _as_probabilities(y)
        softmaxed |= sm
        k = min(top_k, probs.shape[1])
        for f, p in zip(kept[i:i + batch_size], probs):
            idx = np.argsort(-p, kind="stable")[:k]
            out.append(Prediction(str(f), [names[j] for j in idx], [int(j) for j in idx], [float(p[j]) for j in idx]))
    return softmaxed, names


# ---------------------------------------------------------------------------
# CLI


def register_cli(subparsers) -> None:
    """Add ``predict MODEL IMAGE_OR_FOLDER... [--top-k K] [--json] [--skip-bad]`` to argparse subparsers."""
    p = subparsers.add_parser("predict", help="top-k classes of image files with a .keras, .tflite or .onnx model")
    p.add_argument("model", help="model file (.keras, .tflite, .onnx); class names come from model_info.json beside it")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, or folders searched recursively")
    p.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed at the end) instead of failing")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rescale", type=float, default=None, help="float input = pixel * rescale + offset (default: from model_info.json)")
    p.add_argument("--offset", type=float, default=None)
    from .runtime import add_runtime_args

    add_runtime_args(p)
    p.set_defaults(fn=cmd_predict)


def cmd_predict(args) -> int:
    from .runtime import kernels_label, runtime_arg

    if args.batch_size < 1:
        raise McuzooError(f"--batch-size must be at least 1, got {args.batch_size}")
    res = predict(args.model, args.inputs, args.top_k, skip_bad=args.skip_bad, rescale=args.rescale,
                  offset=args.offset, batch_size=args.batch_size, runtime=runtime_arg(args))
    kernels = {"kernels": res.kernels, "kernels_label": kernels_label(res.kernels)} if res.kernels else {}
    if args.json:
        print(json.dumps({
            "model": str(args.model), "backend": res.backend, **kernels, "class_names": res.class_names_source,
            "notes": res.notes, "predictions": [p.to_json() for p in res],
            "skipped": [{"file": f, "error": e} for f, e in res.skipped],
        }, indent=2))
        return 0
    from .console import result_console
    from rich.markup import escape
    from rich.table import Table

    from .console import console as err_console

    out = result_console()
    for note in res.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    how = f"{res.backend}, {kernels['kernels_label']}" if kernels else res.backend
    table = Table(title=f"{escape(str(args.model))} ({escape(how)})", title_justify="left")
    table.add_column("image", overflow="fold")
    table.add_column("#", justify="right")
    table.add_column("class", overflow="fold")
    table.add_column("confidence", justify="right")
    for n, pred in enumerate(res):
        if n:
            table.add_section()
        for r, (label, score) in enumerate(pred.top, 1):
            table.add_row(escape(pred.file) if r == 1 else "", str(r), escape(label), f"{100 * score:.2f} %",
                          style="bold" if r == 1 else None)
    out.print(table)
    if res.skipped:
        err_console.print(f"[yellow]skipped {len(res.skipped)} unreadable file(s):[/]")
        for f, e in res.skipped:
            err_console.print(f"  {escape(e)}")
    return 0
