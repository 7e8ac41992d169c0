"""Training throughput with a card's full recipe against a plain Keras ``fit`` (issue #17).

One process, one model, one compiled training step: EfficientNet LC v1 at 128x128x3 with the
EfficientNet LC flowers recipe (configs/st_efficientnet_lc_flowers_128_recipe.yaml: batch 128 and
every augmentation of the recipe), fed two ways, alternating over ``--rounds`` rounds, each epoch
timed after a warm-up epoch of the same source:

- ``mcuzoo``: what `mcuzoo.train` runs: the split's uint8 images cached in memory, shuffled,
  batched, augmented by whole batches in tf.data (``num_parallel_calls=AUTOTUNE``), preprocessed,
  prefetched while the model steps;
- ``plain``: ``model.fit(x, y)`` on the same images as in-memory float32 arrays, already
  preprocessed, with no augmentation at all (the issue's baseline; Keras re-slices the arrays
  every epoch);
- ``step``: the model step alone: the same float tensors, made once, batched in tf.data with no
  shuffle and no augmentation (the upper bound of what the model step allows).

The mcuzoo and step feeds carry ``mcuzoo.data.core.pipeline_options`` (no tf.data autotuning thread,
whose tuning tick could hold the end of an epoch: BENCHMARKS.md); the plain fit is Keras' own
pipeline, as a user's ``fit(x, y)`` gets it.

The ratio mcuzoo / plain is the issue's measure (goal >= 0.8); mcuzoo / step is the pipeline's
cost against the model step alone. Uses ../shared/data/flowers when it
is there (--data), else synthetic 128x128 images.

    python benchmarks/training_speed_benchmark.py               # about 10 min on 2 cores
    python benchmarks/training_speed_benchmark.py --images 1024 --rounds 6   # what BENCHMARKS.md records
    python benchmarks/training_speed_benchmark.py --images 512 --rounds 3 --bf16   # + the step in bfloat16
    python benchmarks/training_speed_benchmark.py --images 1024 --rounds 4 --autotune   # + mcuzoo's feed with autotuning on
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "st_efficientnet_lc_flowers_128_recipe.yaml"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "flowers"))
    ap.add_argument("--images", type=int, default=1536, help="training images per epoch")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--bf16", action="store_true",
                    help="also time the model step alone under mixed_bfloat16 (a second model, same tensors)")
    ap.add_argument("--autotune", action="store_true",
                    help="also time mcuzoo's feed with tf.data autotuning switched back on (what it was before "
                         "pipeline_options)")
    a = ap.parse_args()

    import mcuzoo  # noqa: F401  (the same TF environment as the CLI)
    import keras
    import tensorflow as tf

    from mcuzoo.config import load_config
    from mcuzoo.data import augment_fn
    from mcuzoo.data.core import Split, pipeline_options, preprocess
    from mcuzoo.models import build_model
    from mcuzoo.train import preprocess_fn

    over = ["training.verbose=false"]
    source = "synthetic"
    if Path(a.data).is_dir():
        over.append(f"dataset.path={a.data}")
        source = a.data
    cfg = load_config(a.config, over)
    shape = tuple(cfg.model.input_shape)
    if source == "synthetic":
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (a.images,) + shape, dtype=np.uint8)
        labels = rng.integers(0, 5, a.images).astype(np.int32)
        n_classes = 5
    else:
        from mcuzoo.data.loading import load_run_dataset

        ds = load_run_dataset(cfg)
        tr = ds.train
        images = (tr.images if tr.images is not None else tr.decoded().images)[: a.images]
        labels = tr.labels[: a.images].astype(np.int32)
        n_classes = len(ds.class_names)
    n = len(images)
    split = Split(labels, images, None, shape, cfg.preprocessing.interpolation, cfg.preprocessing.aspect)
    batch = cfg.training.batch_size
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model.name, shape, n_classes, dropout=cfg.model.dropout)
    model.compile(optimizer=keras.optimizers.Adam(cfg.training.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])

    pre = preprocess_fn(cfg.preprocessing.rescale, cfg.preprocessing.offset)
    aug = augment_fn(cfg.augmentation, 0)

    autotune_on = tf.data.Options()
    autotune_on.autotune.enabled = True

    def mcuzoo_epoch_of(autotune: bool):
        """An epoch of mcuzoo's feed; with ``autotune``, tf.data autotuning switched back on."""
        def mcuzoo_epoch(epoch: int) -> float:
            d = split.tf_dataset(batch, shuffle=True, seed=epoch, cache=True)
            d = d.map(aug, num_parallel_calls=tf.data.AUTOTUNE).map(pre).prefetch(tf.data.AUTOTUNE)
            if autotune:
                d = d.with_options(autotune_on)
            t0 = time.perf_counter()
            model.fit(d, epochs=1, verbose=0)
            return time.perf_counter() - t0
        return mcuzoo_epoch

    xf = preprocess(images, cfg.preprocessing.rescale, cfg.preprocessing.offset)

    def plain_epoch(epoch: int) -> float:
        t0 = time.perf_counter()
        model.fit(xf, labels, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        return time.perf_counter() - t0

    xt, yt = tf.constant(xf), tf.constant(labels)  # made once, outside the timed epochs

    def step_epoch_of(m):
        """An epoch of ``m`` on the same float tensors, batched once in tf.data: the model step alone."""
        def step_epoch(epoch: int) -> float:
            d = tf.data.Dataset.from_tensor_slices((xt, yt)).batch(batch).prefetch(tf.data.AUTOTUNE)
            d = d.with_options(pipeline_options())
            t0 = time.perf_counter()
            m.fit(d, epochs=1, verbose=0)
            return time.perf_counter() - t0
        return step_epoch

    runs = {"mcuzoo": mcuzoo_epoch_of(False), "plain": plain_epoch, "step": step_epoch_of(model)}
    if a.autotune:
        runs["mcuzoo_autotune"] = mcuzoo_epoch_of(True)
    if a.bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        keras.utils.set_random_seed(0)
        model_bf16 = build_model(cfg.model.name, shape, n_classes, dropout=cfg.model.dropout)
        keras.mixed_precision.set_global_policy("float32")
        model_bf16.compile(optimizer=keras.optimizers.Adam(cfg.training.learning_rate),
                           loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
        runs["step_bf16"] = step_epoch_of(model_bf16)
    for fn in runs.values():  # warm-up: tracing, caches
        fn(0)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(a.rounds):
        for k, fn in runs.items():
            times[k].append(fn(r + 1))
            print(f"round {r + 1} {k}: {n / times[k][-1]:.1f} images/s", file=sys.stderr)
    # Rounds of one feed can differ a lot (before pipeline_options, a tf.data iterator's end could wait for
    # the autotuning thread's tick), so both the median and the best round (timeit's rule) are reported.
    ips = {k: n / float(np.median(v)) for k, v in times.items()}
    best = {k: n / float(np.min(v)) for k, v in times.items()}
    res = {
        "model": cfg.model.name, "input": list(shape), "batch": batch, "images": n, "source": source,
        "augmentation": aug.kinds if aug is not None else [], "rounds": a.rounds,
        "images_per_s": {k: round(v, 1) for k, v in ips.items()},
        "ratio": round(ips["mcuzoo"] / ips["plain"], 3),
        "ratio_to_step": round(ips["mcuzoo"] / ips["step"], 3),
        "best_images_per_s": {k: round(v, 1) for k, v in best.items()},
        "best_ratio": round(best["mcuzoo"] / best["plain"], 3),
        "best_ratio_to_step": round(best["mcuzoo"] / best["step"], 3),
        "rounds_images_per_s": {k: [round(n / t, 1) for t in v] for k, v in times.items()},
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, TF {tf.__version__}",
    }
    print("| pipeline | median images/s | best round images/s |\n| --- | ---: | ---: |")
    for k, label in (("mcuzoo", "mcuzoo (cached uint8, full recipe augmentation in tf.data)"),
                     ("plain", "plain Keras fit (in-memory float, no augmentation)"),
                     ("step", "model step alone (the same tensors batched once in tf.data, no shuffle)")):
        print(f"| {label} | {ips[k]:.1f} | {best[k]:.1f} |")
    if "mcuzoo_autotune" in ips:
        print(f"| mcuzoo, tf.data autotuning on | {ips['mcuzoo_autotune']:.1f} | {best['mcuzoo_autotune']:.1f} |")
    if "step_bf16" in ips:
        print(f"| model step alone, mixed_bfloat16 | {ips['step_bf16']:.1f} | {best['step_bf16']:.1f} |")
    print(f"| ratio mcuzoo / plain fit | {res['ratio']:.3f} | {res['best_ratio']:.3f} |\n"
          f"| ratio mcuzoo / model step alone | {res['ratio_to_step']:.3f} | {res['best_ratio_to_step']:.3f} |")
    print(json.dumps(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
