"""Datasets: built-in synthetic sets, EMNIST (IDX or .mat), class-per-folder images and Food-101.

    from mcuzoo.data import Dataset, Split, load_dataset, load_eval_split, augment_fn

`load_dataset` checks image files up front (`images.index_files`), splits on
labels and reads pixels once; `Split.tf_dataset` streams files with parallel
decoding (or serves in-memory arrays); `augment_fn` gives the training-time
augmentation as a tf.data map function; ``mcuzoo data info|preview`` lives in
`mcuzoo.data.cli`. Each dataset layout is a module of `mcuzoo.data.layouts`, registered in
`mcuzoo.layouts`.
"""
from .augment import augment_fn
from .core import Dataset, Split, fit_images, preprocess, resize_images, to_channels
from .loading import load_dataset, load_eval_split, load_run_dataset

__all__ = ["Dataset", "Split", "augment_fn", "fit_images", "preprocess", "load_dataset", "load_eval_split", "load_run_dataset", "resize_images",
           "to_channels"]
