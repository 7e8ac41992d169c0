"""Datasets: built-in synthetic sets, EMNIST IDX files, class-per-folder images and Food-101.

    from mcuzoo.data import Dataset, Split, load_dataset, load_eval_split
"""
from .core import Dataset, Split, resize_images, to_channels
from .loading import load_dataset, load_eval_split

__all__ = ["Dataset", "Split", "load_dataset", "load_eval_split", "resize_images", "to_channels"]
