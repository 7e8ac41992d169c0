"""Fuzz every parser of user input for longer than the test suite does, and tabulate the outcomes.

Same generators and targets as ``tests/test_fuzz.py`` (cases drawn with a seeded ``random.Random``
instead of hypothesis); every case runs in a child process (a crash or a hang is recorded, the
child restarted). Outcomes per parser: success, clean error (a one-line McuzooError), traceback
(any other exception: a bug), crash (the child died: segfault, abort, out-of-memory) and hang (no
result within the time limit).

    python benchmarks/fuzz_benchmark.py                          # default counts
    python benchmarks/fuzz_benchmark.py --cases tflite=2000 onnx=1000 --seed 1
    python benchmarks/fuzz_benchmark.py --scale 0.2 --json out.json

Exit status 1 when any traceback, crash or hang was seen; each distinct failure is printed once
(type, where it escaped, the case that caused it, saved under --save-failures).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_fuzz as fz  # noqa: E402

#: 10,000 cases per parser (issue 16's target): about 1.5 hours on the shared 2-core machine, most of it .tflite
#: (each model is first run in a LiteRT probe process, see mcuzoo.runtime.probe_tflite) and images (a tf.data
#: pipeline per case); ``--scale 0.05`` gives a quick look
DEFAULT_CASES = {"config": 10_000, "overrides": 10_000, "food101": 10_000, "mapping": 10_000, "idx": 10_000,
                 "image": 10_000, "tflite": 10_000, "onnx": 10_000, "keras": 10_000, "metrics": 10_000,
                 "state": 10_000}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=[], metavar="PARSER=N", help="cases per parser (default: %s)"
                    % ", ".join(f"{k}={v}" for k, v in DEFAULT_CASES.items()))
    ap.add_argument("--only", nargs="*", default=None, help="parsers to run")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every default count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0, help="index of the first case (cases are seeded by index: "
                    "--first 5000 --cases tflite=5000 runs the second half of a 10,000-case run, e.g. in a second process)")
    ap.add_argument("--timeout", type=float, default=fz.CASE_TIMEOUT_S, help="seconds per case before it is a hang")
    ap.add_argument("--json", default=None, help="write the table and failures as JSON here")
    ap.add_argument("--save-failures", default=None, help="folder for the inputs of failing cases")
    args = ap.parse_args(argv)

    counts = {k: max(1, int(v * args.scale)) for k, v in DEFAULT_CASES.items()}
    for item in args.cases:
        k, _, v = item.partition("=")
        counts[k] = int(v)
    if args.only:
        counts = {k: v for k, v in counts.items() if k in args.only}

    work = Path(tempfile.mkdtemp(prefix="mcuzoo-fuzz-bench-"))
    worker = fz.Worker(timeout=args.timeout, log_dir=work / "logs")
    (work / "logs").mkdir()
    t0 = time.perf_counter()
    worker.request({"cmd": "warm"}, timeout=600)
    seeds = fz.all_seeds(worker, work / "seeds")
    print(f"worker ready and seeds built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    rows, failures = [], defaultdict(list)
    for target, n in counts.items():
        gen = fz.GENERATORS[target]
        tally: Counter = Counter()
        t1 = time.perf_counter()
        for i in range(args.first, args.first + n):
            ch = fz.RandomChooser(zlib.crc32(f"{args.seed}:{target}:{i}".encode()))  # reproducible per case
            case = gen(ch, seeds)
            out = worker.run(target, case)  # every parser in the child, native or not
            kind = out["kind"]
            tally[kind] += 1
            if kind not in ("ok", "error"):
                key = (target, kind, out.get("type", ""), out.get("where", ""))
                failures[key].append((i, out, case))
            if (i + 1 - args.first) % 500 == 0 and i + 1 - args.first < n:  # a line now and then: a parser's 10,000 cases can take an hour
                print(f"{target:10s} {i + 1 - args.first:6d} / {n} cases ({time.perf_counter() - t1:.0f} s), "
                      + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())), file=sys.stderr, flush=True)
        secs = time.perf_counter() - t1
        rows.append({"parser": target, "cases": n, "clean_errors": tally["error"], "successes": tally["ok"],
                     "tracebacks": tally["traceback"], "crashes": tally["crash"], "hangs": tally["hang"],
                     "seconds": round(secs, 1), "ms_per_case": round(1000 * secs / n, 1)})
        r = rows[-1]
        print(f"{target:10s} {n:6d} cases: {r['clean_errors']} errors, {r['successes']} ok, {r['tracebacks']} tracebacks, "
              f"{r['crashes']} crashes, {r['hangs']} hangs ({secs:.0f} s)", file=sys.stderr, flush=True)
    worker.close()

    head = ["parser", "cases", "clean errors", "successes", "tracebacks", "crashes", "hangs", "ms/case"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['parser']} | {r['cases']} | {r['clean_errors']} | {r['successes']} | {r['tracebacks']} | "
              f"{r['crashes']} | {r['hangs']} | {r['ms_per_case']} |")
    total = {k: sum(r[k] for r in rows) for k in ("cases", "clean_errors", "successes", "tracebacks", "crashes", "hangs")}
    print(f"| **total** | {total['cases']} | {total['clean_errors']} | {total['successes']} | {total['tracebacks']} | "
          f"{total['crashes']} | {total['hangs']} | |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all, worker restarts: {worker.restarts - 1}")

    save = Path(args.save_failures) if args.save_failures else None
    for (target, kind, typ, where), items in failures.items():
        i, out, case = items[0]
        print(f"\n{len(items)} x {target} {kind}: {typ} at {where or '?'}: {out.get('message', '')[:300]}")
        if fz.is_known_bug(target, out):
            print("  (known bug, see KNOWN_BUGS in tests/test_fuzz.py)")
        if out.get("traceback"):
            print("  " + out["traceback"].strip().splitlines()[-3].strip())
        if out.get("log"):
            print("  log: " + " | ".join(out["log"].strip().splitlines()[-5:]))
        for i, out, case in items[:10] if save is not None else ():
            d = save / f"{target}-{kind}-{typ}-{i}"
            d.mkdir(parents=True, exist_ok=True)
            if isinstance(case, dict) and "files" in case:
                fz._write(case["files"], d)
            (d / "case.json").write_text(json.dumps(fz._encode_case(case), indent=1, default=str))
            (d / "outcome.json").write_text(json.dumps(out, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": rows, "seed": args.seed, "first": args.first,
            "failures": [{"target": t, "kind": k, "type": ty, "where": w, "count": len(v), "message": v[0][1].get("message", "")}
                         for (t, k, ty, w), v in failures.items()]}, indent=2))
    return 1 if total["tracebacks"] or total["crashes"] or total["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
