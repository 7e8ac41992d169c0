"""Training curves of the quickstart recipe, before and after the fix of issue 19 (point 2).

Trains ST MNIST v1 on the built-in glyphs36 (configs/quickstart.yaml, stage ``train`` only)
once per recipe, each in its own ``mcuzoo run`` process, and reads the run's history.json:
validation accuracy and loss per epoch, the best and the last epoch, the largest drop of
validation accuracy from one epoch to the next, and the largest validation loss after epoch 1.

Recipes:

- ``before``: the old quickstart (Adam, learning rate 0.01, ReduceLROnPlateau, batch-norm momentum 0.99);
- ``after``: configs/quickstart.yaml as it is now.

Writes benchmarks/results/quickstart_recipe.json and prints markdown for BENCHMARKS.md.

``--diagnose LR MOMENTUM EPOCHS`` finds the cause instead: it trains the quickstart's model and data
with plain Keras ``fit`` (Adam at LR, every BatchNormalization at MOMENTUM) and prints, per epoch,
the training accuracy, the validation accuracy as evaluation computes it (batch norm on its moving
averages) and with batch norm on the validation batches' own statistics.

    python benchmarks/quickstart_recipe_benchmark.py              # both recipes (~2 x 5 min on 2 busy cores)
    python benchmarks/quickstart_recipe_benchmark.py --only after
    python benchmarks/quickstart_recipe_benchmark.py --diagnose 0.01 0.99 8
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quickstart.yaml"

RECIPES = {
    # what configs/quickstart.yaml said before: lr 0.01 with the plateau schedule
    "before": ["model.batch_norm_momentum=null", "training.learning_rate=0.01", "training.lr_schedule.name=plateau",
               "training.reduce_lr.factor=0.5", "training.reduce_lr.patience=4", "training.reduce_lr.min_lr=1e-5",
               "training.early_stopping.patience=8"],
    "after": [],  # the config as it is
}


def train(name: str, overrides: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "mcuzoo", "run", str(CONFIG), f"output_dir={out}", f"name={name}",
           "stages=[train]", *overrides]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.time() - t0
    if res.returncode != 0:
        raise SystemExit(f"{name}: mcuzoo run failed:\n{res.stderr[-3000:]}")
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    h = json.loads((run_dir / "history.json").read_text())["history"]
    rows = [dict(zip(h, v)) for v in zip(*h.values())]
    acc = [float(r["val_accuracy"]) for r in rows]
    loss = [float(r["val_loss"]) for r in rows]
    drops = [acc[i - 1] - acc[i] for i in range(1, len(acc))]
    return {
        "overrides": overrides, "seconds": round(seconds, 1), "epochs": len(acc),
        "val_accuracy": [round(a, 4) for a in acc], "val_loss": [round(v, 4) for v in loss],
        "learning_rate": [float(r["learning_rate"]) for r in rows],
        "best_val_accuracy": round(max(acc), 4), "best_epoch": acc.index(max(acc)) + 1,
        "last_val_accuracy": round(acc[-1], 4),
        "largest_drop": round(max(drops) if drops else 0.0, 4),
        "largest_val_loss_after_epoch_1": round(max(loss[1:]) if len(loss) > 1 else loss[0], 4),
    }


def diagnose(lr: float, momentum: float, epochs: int) -> None:
    import mcuzoo  # noqa: F401 - TensorFlow's environment, as the CLI sets it
    import keras
    import numpy as np

    from mcuzoo.config import load_config
    from mcuzoo.data import load_run_dataset
    from mcuzoo.models import build_model

    cfg = load_config(CONFIG)
    ds = load_run_dataset(cfg)
    p = cfg.preprocessing

    def prep(x):
        return x.astype("float32") * p.rescale + p.offset

    xtr, ytr, xva, yva = prep(ds.train.images), ds.train.labels, prep(ds.val.images), ds.val.labels
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model.name, tuple(cfg.model.input_shape), ds.num_classes, batch_norm_momentum=momentum)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"| epoch | train acc | val acc (moving averages) | val loss | val acc (batch statistics) |  lr {lr}, momentum {momentum}")
    print("| --- | --- | --- | --- | --- |")
    for e in range(epochs):
        h = model.fit(xtr, ytr, batch_size=cfg.training.batch_size, epochs=1, verbose=0, shuffle=True)
        loss, acc = model.evaluate(xva, yva, batch_size=256, verbose=0)
        batch_stats = np.mean(np.concatenate([np.argmax(np.asarray(model(xva[i:i + 256], training=True)), 1) == yva[i:i + 256]
                                              for i in range(0, len(yva), 256)]))
        print(f"| {e + 1} | {100 * h.history['accuracy'][0]:.2f} % | {100 * acc:.2f} % | {loss:.3f} | {100 * batch_stats:.2f} % |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(RECIPES), action="append")
    ap.add_argument("--diagnose", nargs=3, metavar=("LR", "MOMENTUM", "EPOCHS"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quickstart_recipe.json")
    args = ap.parse_args()
    if args.diagnose:
        diagnose(float(args.diagnose[0]), float(args.diagnose[1]), int(args.diagnose[2]))
        return
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or list(RECIPES):
            results[name] = train(name, RECIPES[name], Path(tmp))
            print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if not isinstance(v, list)})}",
                  file=sys.stderr, flush=True)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), shared with other jobs"
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    names = [n for n in RECIPES if n in results]
    print("| recipe | best val acc (epoch) | last val acc | largest epoch-to-epoch drop | largest val loss after epoch 1 | time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in names:
        r = results[n]
        print(f"| {n} | {100 * r['best_val_accuracy']:.2f} % ({r['best_epoch']}) | {100 * r['last_val_accuracy']:.2f} % | "
              f"{100 * r['largest_drop']:.2f} points | {r['largest_val_loss_after_epoch_1']:.3f} | {r['seconds']:.0f} s |")
    print()
    print("| epoch | " + " | ".join(f"{n} val acc | {n} val loss" for n in names) + " |")
    print("| --- |" + " --- | --- |" * len(names))
    for e in range(max(results[n]["epochs"] for n in names)):
        cells = []
        for n in names:
            r = results[n]
            cells += ([f"{100 * r['val_accuracy'][e]:.2f} %", f"{r['val_loss'][e]:.3f}"] if e < r["epochs"] else ["", ""])
        print(f"| {e + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
