"""Plots of a run: confusion matrices and training curves, as PNG files (matplotlib, Agg).

Entry point: :func:`write_plots`, which reads ``metrics.json`` and
``training_log.csv`` of a run directory and writes, where there is data:

- ``confusion_float.png`` and ``confusion_int8.png``: row-normalised confusion
  matrices (each row is one true class and sums to 100 %), class names on both
  axes;
- ``training_curves.png``: loss, accuracy (train and validation) and learning
  rate (log scale) per epoch.

Every file is written atomically (temporary name, then rename). No GUI backend
is ever used.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from . import rundir
from .errors import McuzooError, RunDirError

__all__ = ["confusion_png", "training_curves_png", "write_plots", "read_training_log",
           "CONFUSION_FLOAT_PNG", "CONFUSION_INT8_PNG", "TRAINING_CURVES_PNG"]

CONFUSION_FLOAT_PNG = "confusion_float.png"
CONFUSION_INT8_PNG = "confusion_int8.png"
TRAINING_CURVES_PNG = "training_curves.png"

#: Annotate cells with their percentage only up to this many classes (beyond, the cells are too small).
ANNOTATE_MAX_CLASSES = 12


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it; an unwritable path is a one-line error."""
    plt = _pyplot()
    path = Path(path)
    try:
        with rundir.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as e:
        raise McuzooError(f"cannot write plot {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path


def confusion_png(confusion, class_names, path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix of ``confusion`` (rows: true class, columns: predicted) as a PNG.

    The figure grows with the number of classes and the tick font shrinks, so 36
    or 101 class names stay legible; cells carry their percentage only when there
    are at most :data:`ANNOTATE_MAX_CLASSES` classes.
    """
    import numpy as np

    plt = _pyplot()
    from matplotlib.colors import PowerNorm

    conf = np.asarray(confusion, dtype=np.float64)
    k = len(class_names)
    if conf.ndim != 2 or conf.shape != (k, k):
        raise McuzooError(f"confusion matrix of shape {conf.shape} does not match {k} class names")
    totals = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, totals, out=np.zeros_like(conf), where=totals > 0) * 100.0

    side = float(min(40.0, max(5.5, 2.5 + 0.28 * k)))
    cell_pt = 0.72 * side * 72.0 / max(k, 1)  # one cell's side in points
    tick_fs = float(max(4.0, min(10.0, 0.5 * cell_pt)))
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=110)
    # square-root colour scale: the few % of a typical confusion stay visible beside a ~100 % diagonal
    im = ax.imshow(norm, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=100.0), interpolation="nearest",
                   aspect="equal")
    ticks = np.arange(k)
    labels = [str(c) if len(str(c)) <= 28 else str(c)[:27] + "\u2026" for c in class_names]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(labels, fontsize=tick_fs, rotation=90 if (k > 12 or max(map(len, labels), default=0) > 3) else 0)
    ax.set_yticklabels(labels, fontsize=tick_fs)
    label_fs = float(min(20.0, 10.0 + 0.3 * (side - 5.5)))
    ax.set_xlabel("predicted class", fontsize=label_fs)
    ax.set_ylabel("true class", fontsize=label_fs)
    if k > 1:  # light grid between cells so that rows can be followed across a large matrix
        ax.set_xticks(ticks[:-1] + 0.5, minor=True)
        ax.set_yticks(ticks[:-1] + 0.5, minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.3)
        ax.tick_params(which="minor", length=0)
    if k <= ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                v = norm[i, j]
                if totals[i, 0] == 0 or (v == 0 and i != j):
                    continue
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=max(6.0, 11.0 - 0.4 * k),
                        color="white" if v > 40 else "black")
    n = int(conf.sum())
    acc = float(np.trace(conf) / n) if n else float("nan")
    head = title or "confusion matrix"
    ax.set_title(f"{head}\n{n:,} images, top-1 {100 * acc:.2f} % (rows normalised to 100 %)", fontsize=label_fs + 1)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_ticks([0, 2, 10, 25, 50, 75, 100])
    cbar.set_label("% of the true class (square-root scale)", fontsize=label_fs)
    fig.tight_layout()
    return save_figure(fig, path)


def read_training_log(path: str | Path) -> dict[str, list[float]]:
    """The columns of a Keras CSVLogger file as float lists (empty cells: NaN)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"missing file {path}") from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path} is not a CSV text file") from None
    rows = list(csv.DictReader(text.splitlines()))
    cols: dict[str, list[float]] = {}
    for row in rows:
        for key, val in row.items():
            if key is None:
                continue
            try:
                v = float(val) if val not in (None, "") else math.nan
            except ValueError:
                v = math.nan
            cols.setdefault(key.strip(), []).append(v)
    return cols


def training_curves_png(training_log_csv: str | Path, path: str | Path, title: str = "") -> Path:
    """Loss, accuracy (train and validation) and learning rate (log scale) per epoch, as a PNG."""
    import numpy as np

    cols = read_training_log(training_log_csv)
    n = max((len(v) for v in cols.values()), default=0)
    if n == 0:
        raise RunDirError(f"{training_log_csv} holds no epochs")
    epochs = np.asarray(cols.get("epoch", list(range(1, n + 1))), dtype=float)
    if len(epochs) and epochs[0] == 0:  # Keras' CSVLogger counts from 0; mcuzoo's own log from 1
        epochs = epochs + 1
    plt = _pyplot()
    panels = [("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy"))]
    has_lr = any(math.isfinite(v) and v > 0 for v in cols.get("learning_rate", []))
    fig, axes = plt.subplots(1, 3 if has_lr else 2, figsize=(15 if has_lr else 10.5, 4.2), dpi=110)
    marker = "o" if n <= 30 else None
    for ax, (name, keys) in zip(axes, panels):
        for key, style in zip(keys, ("-", "--")):
            if key in cols:
                y = np.asarray(cols[key], dtype=float)
                if name == "accuracy":
                    y = 100 * y
                label = ("validation" if key.startswith("val_") else "train")
                ax.plot(epochs[: len(y)], y, style, marker=marker, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("%" if name == "accuracy" else "cross-entropy")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if "val_accuracy" in cols:
        va = np.asarray(cols["val_accuracy"], dtype=float)
        if np.isfinite(va).any():
            best = int(np.nanargmax(va))
            axes[1].axvline(epochs[best], color="gray", linestyle=":", linewidth=1)
            axes[1].annotate(f"best {100 * va[best]:.2f} %\n(epoch {int(epochs[best])})", (epochs[best], 100 * va[best]),
                             textcoords="offset points", xytext=(5, -28), fontsize=8, color="0.3")
    if has_lr:
        lr = np.asarray(cols["learning_rate"], dtype=float)
        ax = axes[2]
        ax.plot(epochs[: len(lr)], lr, "-", marker=marker, markersize=3, color="tab:green")
        ax.set_yscale("log")
        ax.set_title("learning rate")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    for ax in axes:
        if n <= 20:
            ax.set_xticks(epochs)
    fig.tight_layout()
    return save_figure(fig, path)


def write_plots(run_dir: str | Path) -> list[Path]:
    """Write the confusion matrices and training curves of ``run_dir``; return the files written.

    Skips what has no data (no metrics.json, no confusion matrix, no training log).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    written: list[Path] = []
    metrics_path = run_dir / rundir.METRICS
    metrics = rundir.read_json(metrics_path) if metrics_path.is_file() else {}
    names = _class_names(run_dir, metrics)
    model = metrics.get("model", "")
    split = metrics.get("evaluation_split", "")
    for key, fname, label in (("float", CONFUSION_FLOAT_PNG, "float"), ("int8", CONFUSION_INT8_PNG, "int8")):
        entry = metrics.get(key)
        if not isinstance(entry, dict) or not entry.get("confusion"):
            continue
        conf = entry["confusion"]
        k = len(conf)
        labels = names if names and len(names) == k else [str(i) for i in range(k)]
        what = f"{model} {label}" if model else label
        where = f" on {metrics.get('dataset', '')} {split}".rstrip() if split else ""
        written.append(confusion_png(conf, labels, run_dir / fname, f"{what} ({entry.get('file', '')}){where}"))
    log = run_dir / rundir.TRAINING_LOG
    if log.is_file() and read_training_log(log):
        title = f"{model} training on {metrics.get('dataset', '')}".strip() if model else ""
        written.append(training_curves_png(log, run_dir / TRAINING_CURVES_PNG, title))
    return written


def _class_names(run_dir: Path, metrics: dict) -> list[str] | None:
    p = run_dir / rundir.MODEL_INFO
    if p.is_file():
        try:
            names = rundir.parse_json(p.read_text(encoding="utf-8")).get("class_names")
            if isinstance(names, list):
                return [str(n) for n in names]
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
    per_class = (metrics.get("float") or metrics.get("int8") or {}).get("per_class")
    if isinstance(per_class, dict):
        return list(per_class)
    return None
