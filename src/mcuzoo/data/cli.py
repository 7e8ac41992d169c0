"""``mcuzoo data info CONFIG [key=value ...]`` and ``mcuzoo data preview CONFIG [key=value ...] [--out PNG] [--n 32]``.

`register_cli` adds the ``data`` verb to the main parser's subparsers; each
sub-verb sets ``fn`` (called with the parsed args, returns an exit code) like
the other verbs.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DEFAULT_PREVIEW = "augmentation_preview.png"


def register_cli(subparsers) -> None:
    """Add ``data`` with its sub-verbs ``info`` and ``preview`` to an argparse subparsers object."""
    d = subparsers.add_parser("data", help="a config's dataset: classes, counts, sizes; augmented samples")
    sub = d.add_subparsers(dest="data_verb", metavar="SUBVERB")
    sub.required = True

    i = sub.add_parser("info", help="classes, images per split and per class, image sizes (a table)")
    i.add_argument("args", nargs="+", metavar="CONFIG [key=value ...]",
                   help="YAML config file, then overrides such as dataset.max_per_class=10")
    i.set_defaults(fn=cmd_data_info)

    p = sub.add_parser("preview", help="a PNG grid of augmented training samples with their class names")
    p.add_argument("args", nargs="+", metavar="CONFIG [key=value ...]",
                   help="YAML config file, then overrides such as augmentation.rotation.rate=1")
    p.add_argument("--out", default=None, metavar="PNG",
                   help=f"output file (default: OUTPUT_DIR/NAME_{DEFAULT_PREVIEW}, beside the config's runs)")
    p.add_argument("--n", type=int, default=32, help="number of samples (default 32)")
    p.add_argument("--seed", type=int, default=None, help="which samples and augmentations (default: training.seed)")
    p.set_defaults(fn=cmd_data_preview)


def _load(args):
    from ..config import load_config
    from .loading import load_run_dataset

    cfg = load_config(args.args[0], args.args[1:])
    return cfg, load_run_dataset(cfg)


def _sizes(split) -> list[str]:
    """Smallest, median and largest source image (by area) as HxW; in-memory splits only know their shape."""
    if split is None or not len(split):
        return ["-", "-", "-"]
    if split.sizes is None:
        h, w = split.image_shape[:2]
        return [f"{h}x{w}", "(in memory)", ""]
    hw = split.sizes.astype(np.int64)
    order = np.argsort(hw[:, 0] * hw[:, 1], kind="stable")
    return [f"{hw[i, 0]}x{hw[i, 1]}" for i in (order[0], order[len(order) // 2], order[-1])]


def cmd_data_info(args) -> int:
    from ..console import result_console
    from rich.table import Table

    from ..layouts import get_layout
    from .augment import active

    cfg, ds = _load(args)
    out = result_console()
    n = ds.num_classes
    splits = [("train", ds.train), ("validation", ds.val), ("test", ds.test)]
    p = cfg.preprocessing
    layout = get_layout(cfg.dataset.name)
    out.print(f"[bold]{ds.name}[/] ({layout.summary}){' ' + cfg.dataset.path if cfg.dataset.path else ''}: {n} classes; "
              f"model input {'x'.join(map(str, ds.image_shape))} ({p.aspect}, {p.interpolation})")

    t = Table(title="splits (per class: fewest / most images; source image sizes HxW by area)")
    for col in ("split", "images", "classes", "fewest", "most", "smallest", "median", "largest"):
        t.add_column(col, justify="left" if col == "split" else "right", no_wrap=True)
    for name, split in splits:
        if split is None:
            t.add_row(name, *["-"] * 7)
            continue
        c = split.class_counts(n)
        t.add_row(name, f"{len(split):,}", f"{int((c > 0).sum())}/{n}", f"{int(c.min()):,}", f"{int(c.max()):,}",
                  *_sizes(split))
    out.print(t)

    ct = Table(title="images per class")
    for col in ("#", "class", "train", "validation", "test"):
        ct.add_column(col, justify="left" if col == "class" else "right")
    counts = [s.class_counts(n) if s is not None else None for _, s in splits]
    for k, cname in enumerate(ds.class_names):
        ct.add_row(str(k), cname, *(f"{int(c[k]):,}" if c is not None else "-" for c in counts))
    out.print(ct)
    kinds = active(cfg.augmentation)
    out.print(f"augmentation (training only): {', '.join(kinds) if kinds else 'none'}")
    for note in ds.notes:
        out.print(f"[yellow]note:[/] {note}")
    if ds.skipped_files:
        out.print(f"[yellow]skipped {len(ds.skipped_files)} bad files[/]")
        for line in ds.skipped_files[:20]:
            out.print(f"  {line}")
        if len(ds.skipped_files) > 20:
            out.print(f"  ... and {len(ds.skipped_files) - 20} more")
    return 0


def preview_grid(images: np.ndarray, titles: list[str], out: str | Path, title: str = "") -> Path:
    """Write uint8 images (N,H,W,C) as a captioned grid PNG (matplotlib, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(images)
    cols = max(1, min(8, n))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(cols * 1.7, rows * 1.9 + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i >= n:
            continue
        img = images[i]
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    from .. import rundir
    from ..errors import ConfigError

    out = Path(out)
    fmt = out.suffix[1:].lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise ConfigError(f"--out {out}: cannot write .{fmt} images (use .png)")
    with rundir.atomic_path(out) as tmp:  # a full disk or a read-only folder: one line naming the file
        fig.savefig(tmp, dpi=100, format=fmt)
    return out


def cmd_data_preview(args) -> int:
    import tensorflow as tf

    from ..console import console
    from ..errors import ConfigError
    from .augment import active, augment_fn

    if args.n < 1:
        raise ConfigError("--n must be at least 1")
    cfg, ds = _load(args)
    seed = cfg.training.seed if args.seed is None else args.seed
    train = ds.train
    k = min(args.n, len(train))
    idx = np.sort(np.random.default_rng([int(seed) & 0xFFFFFFFF, 31]).choice(len(train), size=k, replace=False))
    x, y = train.subset(idx).to_numpy()
    aug = augment_fn(cfg.augmentation, seed)
    if aug is None:
        console.print("[yellow]note:[/] no augmentation configured (every rate is 0): showing the images as they are")
        shown = x
    else:
        shown = aug(tf.constant(x), tf.constant(y))[0].numpy()
    kinds = active(cfg.augmentation)
    title = f"{ds.name}: {k} training samples, augmentation: {', '.join(kinds) if kinds else 'none'}"
    out = Path(args.out) if args.out else Path(cfg.output_dir) / f"{cfg.name}_{DEFAULT_PREVIEW}"
    if not args.out:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from .. import rundir

            raise rundir.disk_error(out.parent, e) from None
    path = preview_grid(shown, [ds.class_names[int(v)] for v in y], out, title)
    console.print(f"{k} samples")
    print(path)  # the result, on stdout
    return 0
