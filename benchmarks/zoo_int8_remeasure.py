"""Re-measure the zoo's int8 .tflite figures on the MCU-exact path and regenerate the cards and zoo/README.md.

For each zoo folder given, the evaluate stage's int8 entry of ``metrics.json`` is re-made exactly as
``mcuzoo run`` makes it (the run's own config and evaluation split, :func:`mcuzoo.evaluate.evaluate_model`
with ``evaluation.runtime`` of the config, ``exact`` by default); the float, ONNX QDQ and mixed entries are
left as they are (Keras and ONNX Runtime do not depend on the .tflite kernels). Then the card and its plots
are rewritten by :func:`mcuzoo.card.write_card` and the table by :func:`mcuzoo.zoo.index`. Run from the
repository root (the configs name ``../shared/data``)::

    python benchmarks/zoo_int8_remeasure.py zoo/*/*

It prints a Markdown table of the float-vs-int8 difference before and after.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path


def remeasure(folder: Path) -> dict:
    from mcuzoo import rundir
    from mcuzoo.config import load_config
    from mcuzoo.data import load_dataset
    from mcuzoo.evaluate import evaluate_model

    cfg = load_config(folder / rundir.CONFIG)
    metrics = rundir.read_json(folder / rundir.METRICS)
    old = dict(metrics["int8"])
    ds = load_dataset(cfg.dataset, tuple(cfg.model.input_shape), cfg.preprocessing.interpolation,
                      aspect=cfg.preprocessing.aspect)
    if ds.eval_split_name != metrics.get("evaluation_split"):
        raise SystemExit(f"{folder}: the config's evaluation split is {ds.eval_split_name}, metrics.json says "
                         f"{metrics.get('evaluation_split')}")
    t = time.perf_counter()
    res = evaluate_model(folder / rundir.INT8_TFLITE, ds.eval_split, ds.class_names, cfg.preprocessing.rescale,
                         cfg.preprocessing.offset, cfg.evaluation.batch_size, cfg.evaluation.runtime,
                         cfg.evaluation.workers or None)
    seconds = time.perf_counter() - t
    new = res.summary()
    new["file"] = rundir.INT8_TFLITE
    new["confusion"] = res.confusion
    for k, v in old.items():  # entries of the stage that this does not measure (e.g. top1_emnist_framing) stay
        new.setdefault(k, v)
    metrics["int8"] = new
    rundir.write_json(folder / rundir.METRICS, metrics)
    return {"folder": folder.as_posix(), "n": res.n, "float": metrics["float"]["top1"], "old": old["top1"],
            "old_kernels": old.get("kernels", "xnnpack"), "new": res.top1, "engine": res.engine, "seconds": seconds}


def main(argv=None) -> int:
    from mcuzoo import zoo
    from mcuzoo.card import write_card

    folders = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    rows = []
    for f in folders:
        print(f"{f} ...", file=sys.stderr, flush=True)
        rows.append(remeasure(f))
        print(f"card: {write_card(f)}", file=sys.stderr, flush=True)
    zoo_dirs = {f.parent.parent for f in folders}
    for z in zoo_dirs:
        print(f"index: {zoo.index(z)}", file=sys.stderr)
    print("| model | split (images) | float | int8 before (kernels) | int8 MCU-exact (engine, seconds) | "
          "float - int8 before | float - int8 MCU-exact |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['folder']} | {r['n']:,} | {100 * r['float']:.2f} % | {100 * r['old']:.2f} % ({r['old_kernels']}) | "
              f"{100 * r['new']:.2f} % ({r['engine']}, {r['seconds']:.0f} s) | "
              f"{100 * (r['float'] - r['old']):+.2f} | {100 * (r['float'] - r['new']):+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
