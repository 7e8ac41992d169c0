"""The dataset-layout registry: every kind of dataset ``dataset.name`` can name, and the datasets the cards know.

A bottom-layer module (the config's schema reads it): names and facts only, no numpy, no TensorFlow. A
layout is one module of :mod:`mcuzoo.data.layouts` plus one :func:`register_layout` call below, in the
style of the model registry (:mod:`mcuzoo.models`). The module (imported only when a dataset is read) has::

    load(cfg: DatasetConfig, image_shape, notes, skipped) -> Source     # a run's dataset (mcuzoo.data.pools)
    detect(path: Path, given: str) -> bool                               # mcuzoo evaluate MODEL DATA: is DATA this layout?
    load_eval(path, given, image_shape, skip, skipped) -> (class names, Pool, what)

The config's ``dataset.name`` takes the registered names (:data:`LAYOUT_NAMES`); ``mcuzoo data info`` names
the layout it read; the model card takes a dataset's title, details and references from :data:`DATASETS`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Layout", "KnownDataset", "register_layout", "get_layout", "LAYOUTS", "LAYOUT_NAMES", "DATASETS",
           "known_dataset"]


@dataclass(frozen=True)
class Layout:
    """One dataset layout. ``module`` reads it; ``dataset`` names the published dataset it is (a key of
    :data:`DATASETS`), if any; ``fallback`` layouts are tried last when ``mcuzoo evaluate`` detects a layout."""

    name: str
    summary: str
    module: str
    needs_path: bool = True
    builtin: bool = False
    dataset: str | None = None
    fallback: bool = False


@dataclass(frozen=True)
class KnownDataset:
    """What a model card says about a dataset: its title, details (links, license) and references."""

    key: str
    title: str
    details: str
    references: tuple[str, ...] = ()


LAYOUTS: dict[str, Layout] = {}
DATASETS: dict[str, KnownDataset] = {}


def register_layout(layout: Layout) -> Layout:
    if layout.name in LAYOUTS:
        raise ValueError(f"dataset layout '{layout.name}' is registered twice")
    LAYOUTS[layout.name] = layout
    return layout


def _known(key: str, title: str, details: str, *references: str) -> None:
    DATASETS[key] = KnownDataset(key, title, details, tuple(references))


def get_layout(name: str) -> Layout:
    """The layout of ``dataset.name`` (the config has already refused other names)."""
    try:
        return LAYOUTS[name]
    except KeyError:
        from .errors import DataError

        raise DataError(f"unknown dataset '{name}' (layouts: {', '.join(LAYOUTS)})") from None


# ---------------------------------------------------------------------------
# the datasets the cards know

_known("emnist", "EMNIST-Byclass",
       "[link](https://www.nist.gov/itl/products-and-services/emnist-dataset), by_class, "
       "digits [0-9] and capital letters [A-Z] (labels 0-35; lower-case letters dropped)",
       '"EMNIST : NIST Special Dataset," [Online]. Available: https://www.nist.gov/itl/products-and-services/emnist-dataset.',
       '"EMNIST: an extension of MNIST to handwritten letters". https://arxiv.org/abs/1702.05373')
_known("flowers", "Flowers",
       "[link](http://download.tensorflow.org/example_images/flower_photos.tgz), License "
       "[CC BY 2.0](https://creativecommons.org/licenses/by/2.0/)",
       '"Tf_flowers : tensorflow datasets," TensorFlow. [Online]. Available: '
       "https://www.tensorflow.org/datasets/catalog/tf_flowers.")
_known("plant", "Plant Village",
       "[link](https://data.mendeley.com/datasets/tywbtsjrjv/1), License "
       "[CC0 1.0](https://creativecommons.org/publicdomain/zero/1.0/)",
       'J, ARUN PANDIAN; GOPAL, GEETHARAMANI (2019), "Data for: Identification of Plant Leaf Diseases Using a '
       '9-layer Deep Convolutional Neural Network", Mendeley Data, V1, doi: 10.17632/tywbtsjrjv.1')
_known("food101", "Food-101", "[link](https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/)",
       'L. Bossard, M. Guillaumin, and L. Van Gool, "Food-101 -- Mining Discriminative Components with Random '
       'Forests." European Conference on Computer Vision, 2014.')
_known("glyphs36", "glyphs36",
       "mcuzoo's built-in synthetic dataset: digits 0-9 and letters A-Z rendered "
       "from the fonts shipped with matplotlib, randomly distorted, deterministic for a seed. It is not "
       "EMNIST: figures on it are not comparable with the EMNIST figures of the reference card")
_known("shapes", "shapes",
       "mcuzoo's built-in synthetic dataset: coloured shapes on textured backgrounds, "
       "rendered at the model's input size. Figures on it are not comparable with any reference card")

# ---------------------------------------------------------------------------
# the layouts, in the order the config lists them

register_layout(Layout("glyphs36", "built-in: 36 synthetic characters (digits, capital letters)",
                       "mcuzoo.data.layouts.builtin", needs_path=False, builtin=True, dataset="glyphs36"))
register_layout(Layout("shapes", "built-in: 6 synthetic coloured shapes", "mcuzoo.data.layouts.builtin",
                       needs_path=False, builtin=True, dataset="shapes"))
register_layout(Layout("emnist_byclass", "EMNIST byclass IDX files (or the .mat file): digits and capital letters",
                       "mcuzoo.data.layouts.emnist_byclass", dataset="emnist"))
register_layout(Layout("folder", "a folder per class (test_path / val_path: separate splits)",
                       "mcuzoo.data.layouts.folder", fallback=True))
register_layout(Layout("food101", "the Food-101 tree: images/<class>/, meta/train.txt and meta/test.txt",
                       "mcuzoo.data.layouts.food101", dataset="food101"))

#: The names ``dataset.name`` takes, in registration order.
LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUTS)

_FLOWERS = {"daisy", "dandelion", "rose", "roses", "sunflower", "sunflowers", "tulip", "tulips"}


def known_dataset(name: str, path: str | None, class_names: list[str]) -> str | None:
    """Which known dataset (a key of :data:`DATASETS`) a run used, from its layout, name, path and classes."""
    name = (name or "").lower()
    layout = LAYOUTS.get(name)
    if layout is not None and layout.dataset:
        return layout.dataset
    if name.startswith("emnist"):
        return "emnist"
    if name in ("food101", "food-101"):
        return "food101"
    low = {c.lower() for c in class_names}
    where = (path or "").lower().replace("-", "").replace("_", "")
    if low and low <= _FLOWERS or "flower" in where:
        return "flowers"
    if any("___" in c for c in class_names) or "plant" in where:
        return "plant"
    if "food101" in where:
        return "food101"
    return None
