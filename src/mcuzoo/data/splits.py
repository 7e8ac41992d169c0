"""Seeded per-class capping and stratified hold-out splits (index arithmetic only)."""
from __future__ import annotations

import numpy as np


def cap_per_class(labels: np.ndarray, max_per_class: int | None, seed: int, stream: int = 0) -> np.ndarray:
    """Indices (sorted) keeping at most ``max_per_class`` random items of each class."""
    labels = np.asarray(labels)
    if max_per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7001, stream])
    keep = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if len(idx) > max_per_class:
            idx = rng.choice(idx, size=max_per_class, replace=False)
        keep.append(idx)
    if not keep:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(keep))


def _holdout_count(n: int, fraction: float) -> int:
    if fraction <= 0 or n < 2:
        return 0
    k = int(round(n * fraction))
    return min(max(k, 1), n - 1)


def stratified_split(labels: np.ndarray, fraction: float, seed: int, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..N-1`` into (keep, held_out), both sorted.

    Each class holds out ``round(n * fraction)`` random items (at least one when
    it has two or more, never all of them), so every class keeps a share.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 9173, stream])
    keep, held = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        k = _holdout_count(len(idx), fraction)
        perm = rng.permutation(idx)
        held.append(perm[:k])
        keep.append(perm[k:])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)  # noqa: E731
    return cat(keep), cat(held)
