"""Built-in synthetic datasets, generated in memory (no download, nothing cached on disk).

``glyphs36``
    The 36 classes of ST MNIST (``0``-``9``, ``A``-``Z``) rendered with PIL from
    the TrueType faces that ship with installed packages (matplotlib's DejaVu,
    STIX and Computer Modern faces), white ink on black like EMNIST, with a
    random affine distortion, stroke width, blur, ink level and gaussian noise.
``shapes``
    Six classes of coloured geometric shapes (circle, square, triangle, star,
    cross, ring) of random colour, size, position and rotation over textured,
    noisy coloured backgrounds with distracting lines, rendered directly at the
    target resolution.

Both are deterministic functions of (seed, stream, count, shape): the same
arguments give byte-identical arrays.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import DataError
from ..layouts import LAYOUTS
from .core import to_channels

GLYPH_CLASSES = [str(d) for d in range(10)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
SHAPE_CLASSES = ["circle", "square", "triangle", "star", "cross", "ring"]
BUILTIN = tuple(n for n, lay in LAYOUTS.items() if lay.builtin)  # glyphs36, shapes (mcuzoo.layouts)

TRAIN_STREAM, TEST_STREAM = 0, 1
_KIND_ID = {"glyphs36": 36, "shapes": 6}


def builtin_class_names(name: str) -> list[str]:
    return list(GLYPH_CLASSES if name == "glyphs36" else SHAPE_CLASSES)


def test_count(samples_per_class: int) -> int:
    """Per-class size of a built-in test set: a fifth of train, at least 20."""
    return max(20, int(samples_per_class) // 5)


def generate(name: str, per_class: int, image_shape, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N,H,W,C), int32 labels) with ``per_class`` images of each class."""
    h, w, c = (int(v) for v in image_shape)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(stream), _KIND_ID[name]])
    if name == "glyphs36":
        return render_glyphs(per_class, (h, w, c), rng)
    if name == "shapes":
        return render_shapes(per_class, (h, w, c), rng)
    raise DataError(f"unknown built-in dataset '{name}' (built-in: {', '.join(BUILTIN)})")


def _labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(num_classes, dtype=np.int32), per_class))


# ---------------------------------------------------------------------------
# glyphs36: fonts


def _font_files() -> list[Path]:
    """TrueType files shipped inside installed packages (matplotlib's mpl-data)."""
    files: list[Path] = []
    spec = importlib.util.find_spec("matplotlib")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        d = Path(loc) / "mpl-data" / "fonts" / "ttf"
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix.lower() in (".ttf", ".otf"))
    return files


_DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _names_ok(path: Path) -> bool | None:
    """Whether the font maps 0-9 and A-Z to glyphs named like those characters.

    This rejects symbol faces that put other glyphs at ASCII code points (TeX's
    cmsy/cmex) and placeholder faces (LastResort). None: cannot tell.
    """
    try:
        from fontTools.ttLib import TTFont
    except ImportError:  # pragma: no cover - fontTools comes with matplotlib
        return None
    try:
        font = TTFont(str(path), lazy=True)
        cmap = font.getBestCmap() or {}
        post = font["post"] if "post" in font else None
        has_names = post is not None and post.formatType in (1.0, 2.0)
    except Exception:
        return False
    for ch in GLYPH_CLASSES:
        cp = ord(ch)
        name = cmap.get(cp)
        if name is None:
            return False
        if not has_names:
            continue
        expected = _DIGIT_NAMES[int(ch)] if ch.isdigit() else ch
        if not (name == expected or name.startswith((expected + ".", expected + "_", expected + "oldstyle"))
                or name in (f"uni{cp:04X}", f"u{cp:04X}")):
            return False
    return True if has_names else None


def _render_char(font: ImageFont.FreeTypeFont, ch: str, size: int, stroke: int = 0) -> Image.Image | None:
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).text((size / 2, size / 2), ch, fill=255, font=font, anchor="mm",
                             stroke_width=stroke, stroke_fill=255)
    return img if img.getbbox() else None


@functools.lru_cache(maxsize=1)
def glyph_faces() -> tuple[tuple[str, object], ...]:
    """Usable faces as (name, font source): every installed face that draws 36 distinct glyphs."""
    faces: list[tuple[str, str | None]] = []
    for path in _font_files():
        if _names_ok(path) is False:
            continue
        try:
            font = ImageFont.truetype(str(path), 32)
        except Exception:
            continue
        renders = [_render_char(font, ch, 64) for ch in GLYPH_CLASSES]
        if any(r is None for r in renders) or len({r.tobytes() for r in renders if r is not None}) != len(renders):
            continue
        faces.append((path.name, str(path)))
    if not faces:
        try:  # Pillow >= 10.1 embeds a scalable default face
            ImageFont.load_default(32).getbbox("A")
            faces.append(("pillow-default", None))
        except Exception:
            raise DataError("glyphs36 needs a TrueType font: none found in matplotlib's mpl-data/fonts") from None
    return tuple(faces)


def _load_face(source, size: int):
    return ImageFont.truetype(source, size) if source is not None else ImageFont.load_default(size)


# stroke variants of every glyph: thinned, as drawn, and two stroked (thicker) ones
THICKNESS_LEVELS = (-1, 0, 1, 2)


@functools.lru_cache(maxsize=2)
def _prerendered(canvas_h: int, canvas_w: int) -> np.ndarray:
    """uint8 (faces, 36, len(THICKNESS_LEVELS), canvas_h, canvas_w) upright glyphs.

    Each glyph is scaled so that its longest side fills a fixed box (like
    EMNIST's centred, padded frames) and centred; the stroke variants share the
    geometry of the plain glyph, so only the stroke width differs.
    """
    m = min(canvas_h, canvas_w)
    box = 0.78 * m
    big = 3 * m  # drawn a little larger than the final size so that stroke widths have fine steps
    unit = m / 56.0  # stroke sizes are tuned for 28x28 output at 2x supersampling
    faces = glyph_faces()
    out = np.zeros((len(faces), len(GLYPH_CLASSES), len(THICKNESS_LEVELS), canvas_h, canvas_w), np.uint8)
    for fi, (_, source) in enumerate(faces):
        font = _load_face(source, max(8, int(round(1.2 * m))))
        for ci, ch in enumerate(GLYPH_CLASSES):
            base = _render_char(font, ch, big)
            bbox = base.getbbox() if base is not None else None
            assert bbox is not None  # glyph_faces kept only faces that draw every glyph
            x0, y0, x1, y1 = bbox
            s = box / max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            region = (cx - canvas_w / (2 * s), cy - canvas_h / (2 * s), cx + canvas_w / (2 * s), cy + canvas_h / (2 * s))
            for ti, level in enumerate(THICKNESS_LEVELS):
                img: Image.Image | None
                if level <= 0:
                    img = base
                else:
                    img = _render_char(font, ch, big, stroke=max(1, int(round(level * unit / s))))
                assert img is not None
                out[fi, ci, ti] = np.asarray(img.resize((canvas_w, canvas_h), Image.Resampling.LANCZOS, box=region))
    plain = out[:, :, THICKNESS_LEVELS.index(0)]
    for ti, level in enumerate(THICKNESS_LEVELS):
        if level < 0:
            r = max(1, int(round(-level * unit)))
            # eroded, but hairlines of light faces survive at reduced ink
            out[:, :, ti] = np.maximum(_erode(plain, r), (plain * 0.55).astype(np.uint8))
    return out


def _erode(x: np.ndarray, r: int) -> np.ndarray:
    """Grey erosion of the last two axes by a (2r+1) square (edges padded with 0)."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)])
    h, w = x.shape[-2:]
    out = x.copy()
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            np.minimum(out, p[..., dy:dy + h, dx:dx + w], out=out)
    return out


def _affine_inverse(cx, cy, theta, shear, sx, sy, tx, ty) -> np.ndarray:
    """PIL AFFINE coefficients (output -> input), shape (N, 6), of: scale, shear, rotate about the centre, translate.

    forward: p' = A (p - ctr) + ctr + t with A = R(theta) Sh(shear) S(sx, sy),
    so PIL needs p = A^-1 (p' - ctr - t) + ctr.
    """
    c, s = np.cos(theta), np.sin(theta)
    # A = [[c, -s], [s, c]] @ [[1, k], [0, 1]] @ diag(sx, sy)
    a00, a01 = c * sx, (c * shear - s) * sy
    a10, a11 = s * sx, (s * shear + c) * sy
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    px, py = cx + tx, cy + ty
    off_x = cx - (i00 * px + i01 * py)
    off_y = cy - (i10 * px + i11 * py)
    return np.stack([i00, i01, off_x, i10, i11, off_y], axis=1)


def render_glyphs(per_class: int, image_shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, c = image_shape
    ss = 2 if max(h, w) <= 64 else 1  # supersampling for smooth edges
    ch_, cw_ = h * ss, w * ss
    glyphs = _prerendered(ch_, cw_)
    labels = _labels(len(GLYPH_CLASSES), per_class, rng)
    n = len(labels)
    m = min(ch_, cw_)

    face = rng.integers(0, len(glyphs), n)
    thick = rng.choice(len(THICKNESS_LEVELS), size=n, p=[0.15, 0.3, 0.35, 0.2])
    theta = np.deg2rad(rng.uniform(-15, 15, n))
    shear = rng.uniform(-0.25, 0.25, n)
    # mostly EMNIST-sized glyphs, a share of smaller ones like raw NIST fields
    scale = np.where(rng.random(n) < 0.75, rng.uniform(0.82, 1.08, n), rng.uniform(0.45, 0.82, n))
    aspect = np.exp(rng.uniform(-0.12, 0.12, n))
    tx = rng.uniform(-0.07, 0.07, n) * cw_
    ty = rng.uniform(-0.07, 0.07, n) * ch_
    blur = rng.uniform(0.0, 0.8, n) * (m / ss) / 28.0
    gain = rng.uniform(0.75, 1.0, n)
    sigma = rng.uniform(0.0, 8.0, n)

    out = np.empty((n, h, w), dtype=np.uint8)
    coeffs = _affine_inverse(cw_ / 2.0, ch_ / 2.0, theta, shear, scale * aspect, scale / aspect, tx, ty).tolist()
    face, thick, labels_l, blur_l = face.tolist(), thick.tolist(), labels.tolist(), blur.tolist()
    for i in range(n):
        img = Image.fromarray(glyphs[face[i], labels_l[i], thick[i]])
        img = img.transform((cw_, ch_), Image.Transform.AFFINE, tuple(coeffs[i]), resample=Image.Resampling.BILINEAR)
        if ss > 1:
            img = img.reduce(ss)
        if blur_l[i] > 0.1:
            img = img.filter(ImageFilter.GaussianBlur(blur_l[i]))
        out[i] = np.asarray(img)
    x = out.astype(np.float32) * gain[:, None, None].astype(np.float32)
    x += rng.standard_normal(x.shape, dtype=np.float32) * sigma[:, None, None].astype(np.float32)
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8)[..., None]
    return to_channels(images, c), labels


# ---------------------------------------------------------------------------
# shapes


def _unit_polygon(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Outlines at unit circumradius; a ring returns (outer, inner)."""
    if kind in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], 1) * [1.0, rng.uniform(0.8, 1.0)]
        if kind == "circle":
            return [outer]
        return [outer, outer * rng.uniform(0.45, 0.68)]
    if kind == "square":
        a = rng.uniform(0.75, 1.0)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], float)
        return [pts / np.hypot(1, a)]
    if kind == "triangle":
        t = np.deg2rad([90, 210, 330]) + rng.uniform(-0.12, 0.12, 3)
        return [np.stack([np.cos(t), np.sin(t)], 1)]
    if kind == "star":
        k = 5
        inner = rng.uniform(0.38, 0.55)
        t = np.arange(2 * k) * np.pi / k
        r = np.where(np.arange(2 * k) % 2 == 0, 1.0, inner)
        return [np.stack([np.cos(t) * r, np.sin(t) * r], 1)]
    if kind == "cross":
        b = rng.uniform(0.24, 0.4)
        pts = np.array([[-b, -1], [b, -1], [b, -b], [1, -b], [1, b], [b, b], [b, 1], [-b, 1],
                        [-b, b], [-1, b], [-1, -b], [-b, -b]], float)
        return [pts / np.hypot(1, b)]
    raise ValueError(kind)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation weights (n_out, n_in) spanning the whole axis."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    f = pos - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - f
    m[np.arange(n_out), lo + 1] = f
    return m


def render_shapes(per_class: int, image_shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each shape class, and their labels, drawn with ``rng``.

    Chunk by chunk: a textured two-colour gradient, a shape colour that stands out from it, the shape and up to
    two distracting lines behind it (drawn supersampled, then averaged), and sensor noise.
    """
    h, w, c = image_shape
    labels = _labels(len(SHAPE_CLASSES), per_class, rng)
    n = len(labels)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    chunk = max(1, 2**22 // (h * w * 3))
    canvas = _ShapeCanvas.of(h, w)
    for start in range(0, n, chunk):
        lab = labels[start:start + chunk]
        k = len(lab)
        bg = _shape_backgrounds(k, canvas, rng)
        col = _shape_colours(bg.mean(axis=(1, 2)), rng)
        geo = _ShapeGeometry.draw(k, h, w, rng)
        shape_a, line_a = _shape_masks(lab, geo, canvas, rng)
        # composite: distracting lines behind the shape
        for q in range(2):
            sel = np.flatnonzero(geo.n_lines > q)
            if len(sel):
                a = line_a[sel, q, :, :, None].astype(np.float32) * (1 / 255)
                bg[sel] += (geo.line_col[sel, q, None, None, :] - bg[sel]) * a
        a = shape_a[..., None].astype(np.float32) * (1 / 255)
        bg += (col[:, None, None, :].astype(np.float32) - bg) * a
        bg += rng.standard_normal(bg.shape, dtype=np.float32) * geo.sigma[:, None, None, None]
        out[start:start + k] = np.clip(np.rint(bg), 0, 255).astype(np.uint8)
    return to_channels(out, c), labels


@dataclass(frozen=True)
class _ShapeCanvas:
    """The fixed grids of one image size: the texture's interpolation matrices and pixel coordinates."""

    h: int
    w: int
    ss: int  # supersampling factor of the drawn masks
    grid: int  # texture grid (grid x grid noise, interpolated to h x w)
    mh: np.ndarray
    mw: np.ndarray
    yy: np.ndarray
    xx: np.ndarray

    @classmethod
    def of(cls, h: int, w: int) -> "_ShapeCanvas":
        grid = 5
        yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, h, dtype=np.float32), np.linspace(-0.5, 0.5, w, dtype=np.float32),
                             indexing="ij")
        return cls(h, w, 2 if max(h, w) <= 128 else 1, grid, _interp_matrix(h, grid), _interp_matrix(w, grid), yy, xx)


def _shape_backgrounds(k: int, cv: _ShapeCanvas, rng: np.random.Generator) -> np.ndarray:
    """``k`` float backgrounds: a two-colour gradient in a random direction plus a low-frequency colour texture."""
    c1 = rng.uniform(0, 255, (k, 3)).astype(np.float32)
    c2 = np.clip(c1 + rng.normal(0, 35, (k, 3)), 0, 255).astype(np.float32)
    phi = rng.uniform(0, 2 * np.pi, k).astype(np.float32)
    t = 0.5 + cv.xx[None] * np.cos(phi)[:, None, None] + cv.yy[None] * np.sin(phi)[:, None, None]
    bg = c1[:, None, None, :] + (c2 - c1)[:, None, None, :] * t[..., None]
    tex = (rng.normal(0, 1, (k, cv.grid, cv.grid, 3)).astype(np.float32)
           * rng.uniform(5, 25, (k, 1, 1, 1)).astype(np.float32))
    bg += np.einsum("hi,nijc,wj->nhwc", cv.mh, tex, cv.mw, optimize=True)
    return bg


def _shape_colours(mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A shape colour per image far enough from its background's ``mean``, also in luma (grayscale models):
    redrawn up to 30 times, then near black or white, whichever the background is not."""
    col = rng.uniform(0, 255, (len(mean), 3))
    luma = np.array([0.2989, 0.587, 0.114])

    def _bad(cc):
        return (np.linalg.norm(cc - mean, axis=1) < 130) | (np.abs((cc - mean) @ luma) < 45)

    for _ in range(30):
        bad = _bad(col)
        if not bad.any():
            break
        col[bad] = rng.uniform(0, 255, (int(bad.sum()), 3))
    bad = _bad(col)
    col[bad] = np.where((mean[bad] @ luma > 127)[:, None], 15.0, 240.0)
    return col


@dataclass(frozen=True)
class _ShapeGeometry:
    """Per image: the shape's radius, centre and rotation; 0 to 2 lines (colour, end points, width); the noise."""

    radius: np.ndarray
    cxs: np.ndarray
    cys: np.ndarray
    rot: np.ndarray
    n_lines: np.ndarray
    line_col: np.ndarray
    line_pts: np.ndarray
    line_w: np.ndarray
    sigma: np.ndarray

    @classmethod
    def draw(cls, k: int, h: int, w: int, rng: np.random.Generator) -> "_ShapeGeometry":
        side = min(h, w)
        radius = rng.uniform(0.26, 0.44, k) * side
        cxs = rng.uniform(0.0, 1.0, k) * np.maximum(w - 1.7 * radius, 0) + 0.85 * radius
        cys = rng.uniform(0.0, 1.0, k) * np.maximum(h - 1.7 * radius, 0) + 0.85 * radius
        rot = rng.uniform(0, 2 * np.pi, k)
        n_lines = rng.integers(0, 3, k)
        line_col = rng.uniform(0, 255, (k, 2, 3)).astype(np.float32)
        line_pts = rng.uniform(-0.1, 1.1, (k, 2, 4)) * np.array([w, h, w, h])
        line_w = rng.uniform(0.01, 0.03, (k, 2)) * side
        sigma = rng.uniform(2, 8, k).astype(np.float32)
        return cls(radius, cxs, cys, rot, n_lines, line_col, line_pts, line_w, sigma)


def _shape_masks(lab: np.ndarray, geo: _ShapeGeometry, cv: _ShapeCanvas,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(shape masks (k, h, w), line masks (k, 2, h, w)), uint8 coverage drawn ``cv.ss`` times finer."""
    h, w, ss = cv.h, cv.w, cv.ss
    k = len(lab)
    shape_a = np.zeros((k, h, w), np.uint8)
    line_a = np.zeros((k, 2, h, w), np.uint8)
    for j in range(k):
        polys = _unit_polygon(SHAPE_CLASSES[lab[j]], rng)
        cr, sr = math.cos(geo.rot[j]), math.sin(geo.rot[j])
        rmat = np.array([[cr, -sr], [sr, cr]])
        mask = Image.new("L", (w * ss, h * ss), 0)
        draw = ImageDraw.Draw(mask)
        for p, poly in enumerate(polys):
            pts = (poly @ rmat.T * geo.radius[j] + [geo.cxs[j], geo.cys[j]]) * ss
            draw.polygon([tuple(q) for q in pts], fill=255 if p == 0 else 0)
        shape_a[j] = np.asarray(mask.reduce(ss) if ss > 1 else mask)
        for q in range(int(geo.n_lines[j])):
            lm = Image.new("L", (w * ss, h * ss), 0)
            x0, y0, x1, y1 = (geo.line_pts[j, q] * ss).tolist()
            ImageDraw.Draw(lm).line([(x0, y0), (x1, y1)], fill=255, width=max(1, int(round(geo.line_w[j, q] * ss))))
            line_a[j, q] = np.asarray(lm.reduce(ss) if ss > 1 else lm)
    return shape_a, line_a
