"""The built-in synthetic layouts ``glyphs36`` and ``shapes`` (:mod:`mcuzoo.data.builtin` renders them)."""
from __future__ import annotations

from pathlib import Path

from ...config import DatasetConfig
from .. import builtin
from ..pools import Pool, Source, memory_pool, only_folder_paths


def load(cfg: DatasetConfig, image_shape: tuple[int, int, int], notes: list[str], skipped: list[str]) -> Source:
    """``samples_per_class`` generated training images per class and a separate generated test set."""
    name = cfg.name
    only_folder_paths(cfg)
    if cfg.path:
        notes.append(f"dataset.path is not used by the built-in dataset '{name}'")
    n = cfg.samples_per_class
    if cfg.max_per_class is not None and cfg.max_per_class < n:
        notes.append(f"max_per_class={cfg.max_per_class} caps samples_per_class={n}")
        n = cfg.max_per_class
    x, y = builtin.generate(name, n, image_shape, cfg.seed, builtin.TRAIN_STREAM)
    n_test = builtin.test_count(n)
    tx, ty = builtin.generate(name, n_test, image_shape, cfg.seed, builtin.TEST_STREAM)
    names = builtin.builtin_class_names(name)
    extra = f" from {len(builtin.glyph_faces())} font faces" if name == "glyphs36" else ""
    notes.append(f"{name}: {n} generated images per class{extra} (seed {cfg.seed}); "
                 f"separate generated test set of {n_test} per class")
    if cfg.test_split > 0:
        notes.append(f"test_split={cfg.test_split:g} not used: '{name}' has its own test set")
    return Source(names, memory_pool(x, y), memory_pool(tx, ty), cap_test=False)


def detect(path: Path, given: str) -> bool:
    """A built-in name that is not also a file or folder."""
    return not path.exists() and given in builtin.BUILTIN


def load_eval(path: Path, given: str, image_shape: tuple[int, int, int], skip: bool,
              skipped: list[str]) -> tuple[list[str], Pool, str]:
    """The built-in test set at the default seed and size."""
    cfg = DatasetConfig(name=given)
    x, y = builtin.generate(cfg.name, builtin.test_count(cfg.samples_per_class), image_shape, cfg.seed,
                            builtin.TEST_STREAM)
    return builtin.builtin_class_names(cfg.name), memory_pool(x, y), f"built-in dataset '{cfg.name}'"
