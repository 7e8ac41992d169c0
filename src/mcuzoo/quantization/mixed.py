"""Mixed int4/int8 weights: the card's ``w4 26.1 % / w8 73.9 %`` QDQ model.

Entry point: :func:`search_mixed`. Weights of Conv/MatMul/Gemm nodes are either
int4 (ONNX opset 21 QDQ, symmetric, per-channel unless asked otherwise) or int8;
activations stay 8-bit and every other constant stays as in the all-int8 QDQ
model. The search starts from all-int4 and raises weight tensors to int8 until
top-1 (``eval_fn``, which must score a **validation** split, never the test
split) is within ``tolerance`` of the all-int8 model, and keeps the smallest
model that passes:

1. Rank the weight tensors. ``rank="sensitivity"`` (default) orders them by the
   noise that int4 adds over int8 per weight byte saved: for each tensor the
   relative quantization noise ``||W - Q4(W)||^2 / ||W||^2`` (per-channel, as
   quantized) minus the int8 one, divided by its parameter count. Relative noise
   of the layers adds up along the network, so raising tensors in this order
   removes the most noise per byte (the greedy knapsack order).
   ``rank="noise"`` ignores size, ``rank="size"`` raises the smallest first.
2. Binary search over the ranked list: candidate k raises the first k tensors.
   k = 0 (all-int4) and k = all (the all-int8 reference) are scored first; the
   search keeps the smallest k that passes (about log2(tensors) evaluations).
3. Refine while the evaluation budget lasts: try lowering raised tensors back to
   int4, largest first, keeping each change that still passes.

What "passes" means. A validation split of a few hundred images measures a
top-1 difference to within about a point, and a search that scores a dozen
candidates and keeps the smallest one that looks good picks the lucky ones:
on held-out images it loses more than it seemed to. So when ``eval_fn`` returns
per-image correctness (a bool per validation image, as
:func:`mcuzoo.models.scoring.evaluate_model`'s ``correct``), a candidate passes only
if its loss against the all-int8 model is within ``tolerance`` with
``confidence``: ``max(drop, 0) + z * se <= tolerance``, where ``drop`` and
``se`` are the paired difference on the same images and its standard error
(:func:`mcuzoo.models.scoring.paired_difference`) and ``z`` the normal quantile of
``confidence`` (0.9: z = 1.28; 0.5: z = 0, the plain comparison). An observed
gain counts as no loss, not as credit: int4 weights add noise to the int8
model and do not make it better in expectation, so a candidate that beats
all-int8 on validation was lucky, and its luck must not pay for its noise.
When ``eval_fn`` returns a plain top-1, the plain comparison is used.

Evaluations are capped by ``max_evals`` (the reference and all-int4 included);
the activation calibration runs once and is reused by every candidate (ORT's
calibration cache, where the installed onnxruntime has it).

The file name reports the shares by weight count:
``<stem>_qdq_w4_26.1_w8_73.9_a8_100.onnx`` (percent of quantized weight
parameters in int4 / int8, and of quantized activation tensors in 8 bits; no
``%`` sign, which shells, URLs and Markdown links would have to escape). The
shares are also in the search's metadata (``w4_share``, ``w8_share``).
"""
from __future__ import annotations

import math
import shutil
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import rundir
from ..errors import McuzooError
from ..models.scoring import paired_difference
from .calibration import Calibration
from .onnx_qdq import (
    INT4_OPSET,
    activation_8bit_share,
    load_onnx,
    prepare_float,
    quantize_prepared,
    weights_flash,
)

RANKINGS = ("sensitivity", "noise", "size")
MIXED_GLOB = "_qdq_w4_*_w8_*_a*.onnx"  # also matches the names of old runs (with %)


def _pct(x: float) -> str:
    return f"{x:.1f}"


def mixed_name(stem: str, w4_share: float, w8_share: float, a8_share: float = 100.0) -> str:
    """``model_qdq_w4_26.1_w8_73.9_a8_100.onnx`` (shares in percent)."""
    w4 = round(w4_share, 1)
    w8 = round(100.0 - w4, 1) if w4_share + w8_share > 0 else round(w8_share, 1)
    a8 = f"{a8_share:.1f}".rstrip("0").rstrip(".")
    return f"{stem}_qdq_w4_{_pct(w4)}_w8_{_pct(w8)}_a8_{a8}.onnx"


@dataclass
class MixedResult:
    path: Path
    accuracy: float
    accuracy_int8: float
    accuracy_int4: float | None
    tolerance: float
    w4_share: float
    w8_share: float
    a8_share: float
    int4_tensors: list[str]
    int8_tensors: list[str]
    weights_bytes: int           # weights flash of the mixed model (mcuzoo.models.flash's definition)
    weights_bytes_int8: int      # the same for the all-int8 QDQ model
    evaluations: int
    rank: str
    confidence: float = 0.5
    drop: float | None = None    # validation top-1 of all-int8 minus the mixed model's (paired, same images)
    drop_se: float | None = None  # its standard error (None when eval_fn gave plain top-1)
    history: list[dict] = field(default_factory=list)
    int4_nodes: list[str] = field(default_factory=list)  # the Conv/MatMul/Gemm nodes reading those weights
    int8_nodes: list[str] = field(default_factory=list)

    @property
    def saving_bytes(self) -> int:
        return self.weights_bytes_int8 - self.weights_bytes

    @property
    def saving_pct(self) -> float:
        return 100.0 * self.saving_bytes / self.weights_bytes_int8 if self.weights_bytes_int8 else 0.0

    def summary(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["file"] = self.path.name
        d["saving_bytes"] = self.saving_bytes
        d["saving_pct"] = round(self.saving_pct, 2)
        for k in ("accuracy", "accuracy_int8", "accuracy_int4", "drop", "drop_se"):
            if d[k] is not None:
                d[k] = round(d[k], 6)
        for k in ("w4_share", "w8_share", "a8_share"):
            d[k] = round(d[k], 2)
        return d


def _fake_quant_noise(w: np.ndarray, bits: int, axis: int | None) -> float:
    """Relative noise ||W - Q(W)||^2 / ||W||^2 of symmetric quantization (per-channel along ``axis``)."""
    qmax = 2 ** (bits - 1) - 1
    w = w.astype(np.float64)
    if axis is None:
        amax = np.abs(w).max()
    else:
        red = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.abs(w).max(axis=red, keepdims=True)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    q = np.clip(np.round(w / scale), -qmax - 1, qmax) * scale
    power = float((w ** 2).sum())
    return float(((w - q) ** 2).sum()) / power if power > 0 else 0.0


def rank_weights(prepared_path: str | Path, weights: list[dict], per_channel: bool = True,
                 rank: str = "sensitivity") -> list[dict]:
    """The weight tensors in the order they are raised to int8 (most useful first), with their scores."""
    import onnx
    from onnx import numpy_helper

    if rank not in RANKINGS:
        raise McuzooError(f"mixed ranking must be one of {', '.join(RANKINGS)}, got {rank!r}")
    model = onnx.load(str(prepared_path))
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for w in weights:
        arr = numpy_helper.to_array(inits[w["name"]])
        axis = w["axis"] if per_channel else None
        n4 = _fake_quant_noise(arr, 4, axis)
        n8 = _fake_quant_noise(arr, 8, axis)
        d = dict(w)
        d["noise_int4"] = n4
        d["noise_int8"] = n8
        d["score"] = {"sensitivity": (n4 - n8) / max(1, w["size"]), "noise": n4 - n8, "size": -w["size"]}[rank]
        out.append(d)
    out.sort(key=lambda d: (-d["score"], d["name"]))
    return out


def search_mixed(
    float_onnx_path: str | Path,
    calibration: Calibration,
    eval_fn: Callable[[Path], Any],  # a top-1, or per-image correctness (see the module doc)
    tolerance: float = 0.015,
    out_dir: str | Path | None = None,
    stem: str = "model",
    per_channel: bool = True,
    calibration_method: str = "minmax",
    activation_type: str = "int8",
    rank: str = "sensitivity",
    max_evals: int = 12,
    refine: bool = True,
    keep_int8: bool = False,
    confidence: float = 0.9,
) -> MixedResult:
    """Search int4/int8 weights per tensor; write ``<stem>_qdq_w4_.._w8_.._a8_100.onnx`` into ``out_dir``.

    ``calibration``: the activation calibration of every candidate. ``eval_fn(path)``
    returns top-1 in [0, 1] of the ONNX file at ``path`` on a validation split,
    or a bool array of per-image correctness (then ``confidence`` applies, see
    the module's docstring).
    ``tolerance`` is in the same unit (0.015: 1.5 points). ``keep_int8`` also
    writes the all-int8 reference as ``<stem>_qdq_int8_opset21.onnx``.

    Longer than a screen on purpose: the candidates' cache, the pass rule and the bisection share the
    scored models and the reference's per-image results, and read in the order the module doc describes
    (score the ends, bisect on the ranking, refine, keep the smallest passing model).
    """
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
        raise McuzooError(f"mixed tolerance must be in [0, 1) (0.015 = 1.5 points), got {tolerance!r}")
    if not (isinstance(confidence, (int, float)) and 0.5 <= confidence < 1):
        raise McuzooError(f"mixed confidence must be in [0.5, 1) (0.9 = 90 %), got {confidence!r}")
    z = statistics.NormalDist().inv_cdf(float(confidence))
    if int(max_evals) < 2:
        raise McuzooError("mixed search needs at least 2 evaluations (all-int8 and all-int4)")
    if rank not in RANKINGS:
        raise McuzooError(f"mixed ranking must be one of {', '.join(RANKINGS)}, got {rank!r}")
    float_onnx_path = Path(float_onnx_path)
    load_onnx(float_onnx_path)
    out_dir = Path(out_dir) if out_dir is not None else float_onnx_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="mcuzoo_mixed_") as tmpd:
        tmp = Path(tmpd)
        prepared = prepare_float(float_onnx_path, tmp / "prepared.onnx", INT4_OPSET, "float")
        if not prepared.weights:
            raise McuzooError(f"{float_onnx_path} has no Conv/MatMul/Gemm weights to hold in int4")
        ranked = rank_weights(prepared.path, prepared.weights, per_channel, rank)
        names = [w["name"] for w in ranked]
        nodes = {w["name"]: w["node"] or w["name"] for w in ranked}
        cache = tmp / "calibration.json"
        evals = {"n": 0}
        history: list[dict] = []
        scored: dict[frozenset, tuple[float, int, Path]] = {}
        per_image: dict[frozenset, np.ndarray] = {}
        ref: dict = {}

        def candidate(raised: frozenset) -> tuple[float, int, Path]:
            if raised in scored:
                return scored[raised]
            path = tmp / f"cand{len(scored)}.onnx"
            bits = {n: (8 if n in raised else 4) for n in names}
            quantize_prepared(prepared, calibration, path, per_channel, calibration_method, activation_type,
                              weight_bits=bits, cache_path=cache)
            got = eval_fn(path)
            if isinstance(got, np.ndarray) and got.ndim == 1 and got.size and got.dtype == bool:
                per_image[raised] = got
                acc = float(got.mean())
            else:
                try:
                    acc = float(got)
                except (TypeError, ValueError):
                    acc = math.nan
            if not (0.0 <= acc <= 1.0) or math.isnan(acc):
                raise McuzooError("mixed search: eval_fn must return top-1 in [0, 1] or per-image correctness "
                                  f"(a non-empty bool array), got {got!r}"[:300])
            evals["n"] += 1
            size = weights_flash(path).total_bytes
            scored[raised] = (acc, size, path)
            history.append({"int8_tensors": len(raised), "accuracy": round(acc, 6), "weights_bytes": size})
            if raised in per_image and "correct" in ref:
                d = paired_difference(per_image[raised], ref["correct"])
                history[-1].update(drop=round(d.diff, 6), drop_se=round(d.se, 6))
            return scored[raised]

        everything = frozenset(names)
        acc8, bytes8, path8 = candidate(everything)
        if everything in per_image:
            ref["correct"] = per_image[everything]
        history[-1]["note"] = "all-int8 reference"
        acc4, _, _ = candidate(frozenset())
        history[-1]["note"] = "all-int4"

        def drop_of(raised: frozenset) -> tuple[float, float | None]:
            acc = candidate(raised)[0]
            if raised in per_image and "correct" in ref:
                d = paired_difference(per_image[raised], ref["correct"])  # refuses results of other images
                return d.diff, d.se
            return acc8 - acc, None

        def passes(raised: frozenset) -> bool:
            drop, se = drop_of(raised)
            if se is None:
                return drop <= tolerance + 1e-12
            return max(drop, 0.0) + z * se <= tolerance + 1e-12

        best: frozenset[str]
        if passes(frozenset()):
            best = frozenset()
        else:
            lo, hi = 0, len(names)  # lo fails, hi passes
            while hi - lo > 1 and evals["n"] < max_evals:
                mid = (lo + hi) // 2
                if passes(frozenset(names[:mid])):
                    hi = mid
                else:
                    lo = mid
            best = frozenset(names[:hi])
            if refine:
                sizes = {w["name"]: w["size"] for w in ranked}
                order = {n: i for i, n in enumerate(names)}
                # largest first; ties in rank order (a set's own order changes with PYTHONHASHSEED)
                for n in sorted(best, key=lambda n: (-sizes[n], order[n])):
                    if evals["n"] >= max_evals:
                        break
                    trial = best - {n}
                    if passes(trial):
                        best = trial
        # the smallest passing model among all that were scored (ties: the more accurate)
        passing = [(v[1], -v[0], k) for k, v in scored.items() if passes(k)]
        _, _, best = min(passing, key=lambda t: (t[0], t[1], len(t[2])))
        acc, size, path = scored[best]
        drop, drop_se = drop_of(best)

        model = load_onnx(path)
        wf = weights_flash(model)
        a8 = activation_8bit_share(model)
        final = out_dir / mixed_name(stem, wf.w4_share, wf.w8_share, a8)
        with rundir.atomic_path(final) as t:
            shutil.copyfile(path, t)
        if keep_int8:
            with rundir.atomic_path(out_dir / f"{stem}_qdq_int8_opset{INT4_OPSET}.onnx") as t:
                shutil.copyfile(path8, t)
    # an older search's file with other shares would be mistaken for this one
    for old in out_dir.glob(f"{stem}{MIXED_GLOB}"):
        if old.name != final.name:
            old.unlink(missing_ok=True)
    return MixedResult(
        path=final, accuracy=acc, accuracy_int8=acc8, accuracy_int4=acc4, tolerance=float(tolerance),
        w4_share=wf.w4_share, w8_share=wf.w8_share, a8_share=a8,
        int4_tensors=[n for n in names if n not in best], int8_tensors=[n for n in names if n in best],
        weights_bytes=wf.total_bytes, weights_bytes_int8=bytes8, evaluations=evals["n"], rank=rank,
        confidence=float(confidence) if drop_se is not None else 0.5, drop=drop, drop_se=drop_se,
        history=history,
        int4_nodes=[nodes[n] for n in names if n not in best], int8_nodes=[nodes[n] for n in names if n in best],
    )
