"""The dataset-layout registry: the config, the loaders, ``data info`` and the card read the layouts from it."""
from __future__ import annotations

import subprocess
import sys
import typing

import numpy as np
import pytest

from mcuzoo import layouts
from mcuzoo.config import DatasetConfig
from mcuzoo.errors import ConfigError, DataError
from mcuzoo.layouts import LAYOUT_NAMES, LAYOUTS, Layout, known_dataset

TINY = '''
import numpy as np
from mcuzoo.data.pools import Source, memory_pool

def _images(n, shape):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), np.arange(n, dtype=np.int32) % 2

def load(cfg, image_shape, notes, skipped):
    x, y = _images(40, image_shape)
    notes.append("tiny layout")
    return Source(["even", "odd"], memory_pool(x, y))

def detect(path, given):
    return path.suffix == ".tiny"

def load_eval(path, given, image_shape, skip, skipped):
    x, y = _images(6, image_shape)
    return ["even", "odd"], memory_pool(x, y), f"tiny file {path}"
'''


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "tiny_layout.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_layout  # noqa: F401 - a layout's module is imported before it is read (data/layouts/__init__.py)

    yield "tiny_layout"
    sys.modules.pop("tiny_layout", None)


def test_the_config_takes_exactly_the_registered_layouts():
    assert typing.get_args(DatasetConfig.model_fields["name"].annotation) == LAYOUT_NAMES == tuple(LAYOUTS)
    for name, layout in LAYOUTS.items():
        if layout.needs_path:
            with pytest.raises((ConfigError, ValueError), match="needs dataset.path"):
                DatasetConfig(name=name)
        else:
            DatasetConfig(name=name)


def test_every_layout_module_has_the_three_functions():
    from mcuzoo.data.layouts import reader

    for layout in LAYOUTS.values():
        m = reader(layout)
        assert callable(m.load) and callable(m.detect) and callable(m.load_eval), layout.name


def test_importing_the_registry_and_the_config_imports_no_numpy_or_tensorflow():
    code = ("import sys, mcuzoo.config, mcuzoo.layouts; "
            "print(any(m in sys.modules for m in ('numpy', 'tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_load_dataset_reads_the_module_the_registry_names(tiny_module, monkeypatch):
    from mcuzoo.data import load_dataset

    monkeypatch.setitem(LAYOUTS, "folder", Layout("folder", "a test layout", tiny_module))
    ds = load_dataset(DatasetConfig(name="folder", path="anything", validation_split=0.25), (8, 8, 1))
    assert ds.class_names == ["even", "odd"] and "tiny layout" in ds.notes
    assert len(ds.train) + len(ds.val) == 40


def test_load_eval_split_detects_a_registered_layout(tiny_module, monkeypatch, tmp_path):
    from mcuzoo.data import load_eval_split

    monkeypatch.setitem(LAYOUTS, "tiny", Layout("tiny", "a test layout", tiny_module))
    f = tmp_path / "data.tiny"
    f.write_bytes(b"")
    split, names = load_eval_split(str(f), (8, 8, 1))
    assert names == ["even", "odd"] and len(split) == 6
    with pytest.raises(DataError, match="evaluation data not found"):
        load_eval_split(str(tmp_path / "missing.bin"), (8, 8, 1))


def test_an_unknown_layout_is_one_line():
    with pytest.raises(DataError, match="unknown dataset 'nope' \\(layouts: glyphs36, "):
        layouts.get_layout("nope")


def test_the_card_reads_the_dataset_facts_of_a_layout(monkeypatch):
    assert known_dataset("emnist_byclass", None, []) == "emnist"
    assert known_dataset("glyphs36", None, []) == "glyphs36"
    assert known_dataset("folder", "data/flower_photos", []) == "flowers"
    monkeypatch.setitem(LAYOUTS, "folder", Layout("folder", "x", "mcuzoo.data.layouts.folder", dataset="plant"))
    assert known_dataset("folder", "data/flower_photos", []) == "plant"
    assert known_dataset("nothing", None, ["a"]) is None


def test_a_layout_whose_module_is_not_imported_is_one_line(monkeypatch):
    from mcuzoo.data import load_dataset

    monkeypatch.setitem(LAYOUTS, "folder", Layout("folder", "x", "mcuzoo.data.layouts.not_there"))
    with pytest.raises(DataError, match="its module mcuzoo.data.layouts.not_there is not imported"):
        load_dataset(DatasetConfig(name="folder", path="anything"), (8, 8, 1))
