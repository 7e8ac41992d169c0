"""Benchmark of the data pipeline at realistic sizes: memory, streaming speed, training throughput.

Generates (once, into --data-dir) two data sets of realistic size:

- a Food-101-like set in the Food-101 layout (images/<class>/<id>.jpg, meta/):
  101 classes x 250 JPEGs (25,250 by default; --food-images 101000 for the full
  size), longest side 256 px, made from the genuine Food-101 photos in
  ../shared/data/food-101-10 (random crop, flip, colour jitter, JPEG quality
  75-92) or, without them, from synthetic images;
- EMNIST byclass at full size in its IDX format: 697,932 training + 116,323
  test images (814,255), made from the EMNIST-format sample in
  ../shared/data/emnist-byclass-sample (each image randomly shifted by up to
  2 px) or from noise, gzip level 1.

Then, each in a fresh process (so that peak RSS, VmHWM, is its own):

1. ``load``: `load_dataset` (for the folder set this includes the up-front check
   of every file), then one epoch of ``train.tf_dataset(64, shuffle=True)``:
   images/s of the pipeline alone and the peak RSS;
2. ``train``: the same model trained on the pipeline (for the folder set both
   streamed and with ``cache=True``) and on in-memory tensors (the same
   images, already decoded, as a tf.constant), alternating the sources over
   two rounds, each fit timed after a warm-up epoch:
   st_mnist_v1 at 28x28x1 (batch 64) for EMNIST, st_efficientnet_lc_v1 at
   128x128x3 (batch 32) for the folder set.

Prints markdown tables (and the machine) for BENCHMARKS.md.

    python benchmarks/data_benchmark.py                       # everything (~10 min on 2 cores)
    python benchmarks/data_benchmark.py --data-dir /tmp/bench --food-images 101000
    python benchmarks/data_benchmark.py --only load           # no training
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EMNIST_TRAIN, EMNIST_TEST = 697_932, 116_323
MiB = 2**20


# ---------------------------------------------------------------------------
# memory


def proc_status() -> dict:
    """VmRSS and VmHWM (peak RSS) of this process, in bytes, from /proc/self/status."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = {"VmRSS": peak, "VmHWM": peak}
    return out


# ---------------------------------------------------------------------------
# data generation


def _food_sources() -> list[Path]:
    root = SHARED / "food-101-10" / "images"
    return sorted(root.glob("*/*.jpg")) if root.is_dir() else []


def _food_worker(job) -> int:
    from PIL import Image, ImageEnhance

    out_dir, items, sources = job
    made = 0
    for iid, cls, seed in items:
        rng = np.random.default_rng(seed)
        if sources:
            im = Image.open(sources[seed % len(sources)]).convert("RGB")
            w, h = im.size
            s = rng.uniform(0.7, 1.0)
            cw, ch = max(8, int(w * s)), max(8, int(h * s))
            x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            im = im.crop((x0, y0, x0 + cw, y0 + ch))
            if rng.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
        else:  # synthetic: smooth colour field with blobs
            yy, xx = np.mgrid[0:192, 0:256] / 256.0
            c = rng.uniform(0, 1, (3, 3))
            img = np.dstack([(c[k, 0] * xx + c[k, 1] * yy + c[k, 2] * xx * yy) for k in range(3)])
            img += rng.normal(0, 0.05, img.shape)
            im = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
        w, h = im.size
        scale = 256 / max(w, h)
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        path = out_dir / "images" / cls / f"{iid}.jpg"
        im.save(path, quality=int(rng.integers(75, 93)))
        made += 1
    return made


def make_food(root: Path, n_images: int, workers: int) -> dict:
    """A Food-101-like set of ``n_images`` JPEGs (101 classes, 3:1 train:test, as Food-101)."""
    done = root / "DONE"
    if done.is_file() and json.loads(done.read_text()).get("images") == n_images:
        return json.loads(done.read_text())
    from multiprocessing import Pool

    t0 = time.time()
    sources = _food_sources()
    real = [p.parent.name for p in sources]
    names = sorted(set(real)) + [f"food_{i:03d}" for i in range(101 - len(set(real)))]
    names = sorted(names)[:101]
    per = n_images // 101
    n_train = round(per * 0.75)
    items, lines = [], {"train": [], "test": []}
    for ci, cls in enumerate(names):
        (root / "images" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per):
            iid = 100000 + ci * per + i
            items.append((iid, cls, ci * 7919 + i))
            lines["train" if i < n_train else "test"].append(f"{cls}/{iid}")
    chunks = [items[i:i + 500] for i in range(0, len(items), 500)]
    with Pool(workers) as pool:
        made = sum(pool.map(_food_worker, [(root, c, sources) for c in chunks]))
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta" / "classes.txt").write_text("\n".join(names) + "\n")
    for split in ("train", "test"):
        (root / "meta" / f"{split}.txt").write_text("\n".join(lines[split]) + "\n")
    size = sum(p.stat().st_size for p in (root / "images").glob("*/*.jpg"))
    info = {"images": made, "train": len(lines["train"]), "test": len(lines["test"]), "bytes": size,
            "source": "food-101-10 photos" if sources else "synthetic", "seconds": round(time.time() - t0, 1)}
    done.write_text(json.dumps(info))
    return info


def _write_idx(path: Path, dims: tuple, chunks, magic: int) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in dims))
        for c in chunks:
            f.write(np.ascontiguousarray(c, dtype=np.uint8).tobytes())


def make_emnist(root: Path) -> dict:
    """EMNIST byclass IDX files at full size (images stored transposed, like the real ones)."""
    done = root / "DONE"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.time()
    root.mkdir(parents=True, exist_ok=True)
    sample = SHARED / "emnist-byclass-sample"
    rng = np.random.default_rng(0)
    if sample.is_dir():
        from mcuzoo.data.emnist import read_idx

        src = read_idx(next(sample.glob("*train-images*")), 0x803)  # stored transposed already
        src_y = read_idx(next(sample.glob("*train-labels*")), 0x801)
        origin = "EMNIST-format sample, shifted"
    else:
        src = rng.integers(0, 256, (2000, 28, 28), dtype=np.uint8)
        src_y = rng.integers(0, 62, 2000).astype(np.uint8)
        origin = "noise"
    for split, n in (("train", EMNIST_TRAIN), ("test", EMNIST_TEST)):
        pick = rng.integers(0, len(src), n)
        shifts = rng.integers(-2, 3, (n, 2))

        def chunks(pick=pick, shifts=shifts):
            for i in range(0, n, 50_000):
                x = src[pick[i:i + 50_000]].copy()
                s = shifts[i:i + 50_000]
                for dy in range(-2, 3):
                    for dx in range(-2, 3):
                        m = (s[:, 0] == dy) & (s[:, 1] == dx)
                        if m.any():
                            x[m] = np.roll(x[m], (dy, dx), axis=(1, 2))
                yield x

        _write_idx(root / f"emnist-byclass-{split}-images-idx3-ubyte.gz", (n, 28, 28), chunks(), 0x803)
        _write_idx(root / f"emnist-byclass-{split}-labels-idx1-ubyte.gz", (n,), [src_y[pick]], 0x801)
    if sample.is_dir():
        (root / "emnist-byclass-mapping.txt").write_text((sample / "emnist-byclass-mapping.txt").read_text())
    info = {"images": EMNIST_TRAIN + EMNIST_TEST, "source": origin, "seconds": round(time.time() - t0, 1),
            "bytes": sum(p.stat().st_size for p in root.glob("*.gz"))}
    done.write_text(json.dumps(info))
    return info


# ---------------------------------------------------------------------------
# workers (each in its own process)


def _dataset(kind: str, data_dir: Path):
    from mcuzoo.config import DatasetConfig
    from mcuzoo.data import load_dataset

    if kind == "emnist":
        return load_dataset(DatasetConfig(name="emnist_byclass", path=str(data_dir / "emnist")), (28, 28, 1))
    return load_dataset(DatasetConfig(name="food101", path=str(data_dir / "food")), (128, 128, 3))


def worker_load(kind: str, data_dir: Path) -> dict:
    import tensorflow as tf  # noqa: F401  (imported first: its own memory is the baseline)

    base = proc_status()["VmRSS"]
    t0 = time.perf_counter()
    ds = _dataset(kind, data_dir)
    load_s = time.perf_counter() - t0
    after_load = proc_status()
    n = 0
    t0 = time.perf_counter()
    for x, y in ds.train.tf_dataset(64, shuffle=True, seed=0):
        n += int(y.shape[0])
    epoch_s = time.perf_counter() - t0
    end = proc_status()
    files = len(ds.train) + len(ds.val) + (len(ds.test) if ds.test is not None else 0)
    return {"kind": kind, "train": len(ds.train), "val": len(ds.val), "test": len(ds.test) if ds.test else 0,
            "files": files, "load_s": load_s, "base_rss": base, "load_hwm": after_load["VmHWM"],
            "epoch_images": n, "epoch_s": epoch_s, "epoch_hwm": end["VmHWM"],
            "in_memory": ds.train.in_memory, "train_bytes": len(ds.train) * int(np.prod(ds.train.image_shape))}


def worker_train(kind: str, data_dir: Path, steps: int, rounds: int) -> dict:
    import keras
    import tensorflow as tf

    from mcuzoo.models import build_model
    from mcuzoo.train import preprocess_fn

    ds = _dataset(kind, data_dir)
    model_name, batch = ("st_mnist_v1", 64) if kind == "emnist" else ("st_efficientnet_lc_v1", 32)
    keras.utils.set_random_seed(0)
    model = build_model(model_name, ds.image_shape, ds.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    pre = preprocess_fn(1 / 127.5, -1.0)
    pipeline = ds.train.tf_dataset(batch, shuffle=True, seed=0).map(pre).repeat()
    sources = [("pipeline", pipeline)]
    cache_s = None
    if not ds.train.in_memory:  # the same split decoded once into memory by the pipeline (cache=True)
        t0 = time.perf_counter()
        cached = ds.train.tf_dataset(batch, shuffle=True, seed=0, cache=True).map(pre).repeat()
        cache_s = time.perf_counter() - t0
        sources.append(("cached", cached))
    n_mem = min(len(ds.train), batch * steps * 2)
    x, y = ds.train.subset(np.arange(n_mem)).to_numpy()
    xt, yt = tf.constant(x), tf.constant(y)
    memory = (tf.data.Dataset.from_tensor_slices((xt, yt)).shuffle(n_mem, seed=0).batch(batch).map(pre)
              .repeat().prefetch(tf.data.AUTOTUNE))
    sources.append(("memory", memory))

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    results = {name: [] for name, _ in sources}
    loads = []
    for _ in range(rounds):
        for name, data in sources:
            timer = Timer()
            model.fit(data, steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[timer])
            results[name].append(timer.times[1])  # the first epoch warms up (tracing, buffers)
            loads.append(os.getloadavg()[0])
    ips = {k: steps * batch * len(v) / sum(v) for k, v in results.items()}
    return {"kind": kind, "model": model_name, "input": "x".join(map(str, ds.image_shape)), "batch": batch,
            "steps": steps * rounds, "pipeline_ips": ips["pipeline"], "memory_ips": ips["memory"],
            "cached_ips": ips.get("cached"), "cache_s": cache_s,
            "ratio": ips["pipeline"] / ips["memory"], "load_avg": float(np.mean(loads)),
            "train_hwm": proc_status()["VmHWM"]}


def run_worker(args: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        raise SystemExit(f"worker {args} failed")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.time() - t0
    return res


# ---------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    import tensorflow as tf

    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, TF {tf.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="/tmp/mcuzoo-data-bench", help="generated data (kept for reruns)")
    ap.add_argument("--food-images", type=int, default=25_250)
    ap.add_argument("--only", choices=["load", "train"], default=None)
    ap.add_argument("--emnist-steps", type=int, default=150, help="measured steps per fit, st_mnist (x2 rounds)")
    ap.add_argument("--food-steps", type=int, default=30, help="measured steps per fit, EfficientNet LC (x2 rounds)")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, data_dir, *rest = args.worker
        if rest and rest[0] == "train":
            res = worker_train(kind, Path(data_dir), int(rest[1]), int(rest[2]))
        else:
            res = worker_load(kind, Path(data_dir))
        print(json.dumps(res))
        return 0

    data_dir = Path(args.data_dir)
    t_start = time.time()
    load0 = os.getloadavg()
    print(f"generating data in {data_dir} (once) ...", file=sys.stderr)
    food = make_food(data_dir / "food", args.food_images, workers=max(1, os.cpu_count() or 1))
    emnist = make_emnist(data_dir / "emnist")
    print(f"food: {food}\nemnist: {emnist}", file=sys.stderr)

    loads, trains = {}, {}
    for kind in ("emnist", "food"):
        if args.only in (None, "load"):
            print(f"{kind}: load + one epoch ...", file=sys.stderr)
            loads[kind] = run_worker([kind, str(data_dir)])
        if args.only in (None, "train"):
            steps = args.emnist_steps if kind == "emnist" else args.food_steps
            print(f"{kind}: training throughput ...", file=sys.stderr)
            trains[kind] = run_worker([kind, str(data_dir), "train", str(steps), "2"])

    print(f"\nMachine: {machine()}; load average before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f} "
          f"(other processes share the CPU); total {time.time() - t_start:.0f} s\n")
    print(f"Data: Food-101-like set of {food['images']:,} JPEGs (longest side 256, {food['bytes'] / MiB:.0f} MiB, "
          f"from {food['source']}); EMNIST byclass IDX of {emnist['images']:,} images "
          f"({emnist['bytes'] / MiB:.0f} MiB gzip, from {emnist['source']}).\n")
    if loads:
        print("| data set (target) | images train/val/test | load (s) | RSS before load | peak RSS after load | "
              "epoch: pipeline images/s | peak RSS in epoch |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for kind, r in loads.items():
            name = ("EMNIST byclass, labels 0-35 (28x28x1, in memory)" if kind == "emnist"
                    else "Food-101-like JPEGs (128x128x3, streamed)")
            extra = "" if kind == "emnist" else f" ({1e6 * r['load_s'] / r['files']:.0f} µs/file incl. checks)"
            print(f"| {name} | {r['train']:,}/{r['val']:,}/{r['test']:,} | {r['load_s']:.1f}{extra} | "
                  f"{r['base_rss'] / MiB:,.0f} MiB | {r['load_hwm'] / MiB:,.0f} MiB | "
                  f"{r['epoch_images'] / r['epoch_s']:,.0f} | {r['epoch_hwm'] / MiB:,.0f} MiB |")
        print()
    if trains:
        print("| model (input, batch) | data | measured steps | pipeline images/s | in-memory tensors images/s | "
              "ratio | load avg |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for kind, r in trains.items():
            base = f"| {r['model']} ({r['input']}, {r['batch']}) |"
            if kind == "emnist":
                rows = [("EMNIST IDX (in-memory split, numpy gather)", r["pipeline_ips"])]
            else:
                rows = [("Food-101-like JPEGs, streamed (decode every epoch)", r["pipeline_ips"]),
                        (f"Food-101-like JPEGs, `cache=True` (decoded once in {r['cache_s']:.0f} s)", r["cached_ips"])]
            for data, ips in rows:
                print(f"{base} {data} | {r['steps']} | {ips:,.1f} | {r['memory_ips']:,.1f} | "
                      f"{ips / r['memory_ips']:.2f} | {r['load_avg']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
