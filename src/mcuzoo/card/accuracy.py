"""Accuracy per model format on the evaluation split, how the mixed model was chosen, and the confusion matrices."""
from __future__ import annotations

import re

from ..layouts import DATASETS
from ..rundir import without_machine_paths
from .context import Context
from .text import NOT_MEASURED, _code, _get, _int, _pct, _table


def int8_format(kernels: str) -> str:
    """The accuracy table's format cell of an int8 .tflite, naming the kernels that measured it."""
    from ..runtime import kernels_label

    return f"Int8, {kernels_label(kernels)}"


def _accuracy_rows(ctx: Context) -> list[list[str]]:
    rows = []
    m = ctx.m

    def split_text(entry) -> str:
        split = entry.get("split") or ctx.split or "?"
        n = entry.get("n")
        if n is None and "split" not in entry:  # ONNX rows are scored on the run's evaluation split
            n = (m.get("float") or {}).get("n")
        return f"{split}, {n:,} images" if isinstance(n, int) else str(split)

    for key, fmt in (("float", "Float"), ("int8", "Int8")):
        e = m.get(key)
        if key == "int8" and isinstance(e, dict) and e.get("kernels"):
            fmt = int8_format(str(e["kernels"]))
        if isinstance(e, dict) and e.get("top1") is not None:
            rows.append([f"[{ctx.tag}]({e.get('file', '')})" if e.get("file") else ctx.tag, fmt, ctx.res,
                         _pct(e["top1"]), split_text(e)])
    q = m.get("onnx_qdq")
    if isinstance(q, dict) and q.get("top1") is not None:
        rows.append([f"[{ctx.tag}]({q['file']})" if q.get("file") else ctx.tag, "Int8 (ONNX QDQ)", ctx.res,
                     _pct(q["top1"]), split_text(q)])
    mx = m.get("mixed")
    if isinstance(mx, dict):
        acc = mx.get("top1")
        entry = dict(mx)
        if acc is None and mx.get("accuracy") is not None:
            acc = mx["accuracy"]
            entry.setdefault("split", "validation (mixed search)")
        if acc is not None:
            shares = ""
            named = re.search(r"_w4_([\d.]+)%?_w8_([\d.]+)%?_", str(mx.get("file") or ""))
            if named:  # the shares exactly as the file name gives them
                shares = f", w4 {named.group(1)} % / w8 {named.group(2)} %"
            elif mx.get("w4_share") is not None and mx.get("w8_share") is not None:
                shares = f", w4 {float(mx['w4_share']):.1f} % / w8 {float(mx['w8_share']):.1f} %"
            rows.append([f"[{ctx.tag}]({mx['file']})" if mx.get("file") else ctx.tag,
                         f"Int8/Int4 (ONNX QDQ{shares})", ctx.res, _pct(acc), split_text(entry)])
    return rows


def accuracy(ctx: Context) -> str:
    head = f"### Accuracy with {ctx.dataset_title} dataset"
    details = DATASETS[ctx.kind].details if ctx.kind in DATASETS else f"{_code(ctx.dataset)} dataset"
    if ctx.kind not in DATASETS and _get(ctx.cfg, "dataset", "path"):
        details += f" from {_code(_get(ctx.cfg, 'dataset', 'path'))}"
    n_eval = _get(ctx.m, "float", "n") or _get(ctx.m, "int8", "n")
    split = ctx.split or NOT_MEASURED
    split_s = f"{split} split" + (f", {n_eval:,} images" if isinstance(n_eval, int) else "")
    if ctx.split == "validation":
        split_s += " (the dataset has no test split: the validation split also chose the best epoch, so this is optimistic)"
    lines = [f"Dataset details: {details}. Number of classes: {_int(ctx.num_classes)}. Evaluated on the {split_s}."]
    notes = [without_machine_paths(str(n)) for n in (ctx.m.get("notes") or [])]
    if notes:
        lines.append("Dataset notes (from the run):\n\n" + "\n".join(f"- {n}" for n in notes))
    rows = _accuracy_rows(ctx)
    if rows:
        lines.append(_table(["Model", "Format", "Resolution", "Top 1 Accuracy (%)", "Evaluated on"], rows))
        how = _mixed_note(ctx)
        if how:
            lines.append(how)
        framings = _framings_note(ctx)
        if framings:
            lines.append(framings)
        measured = _runtimes_note(ctx)
        if measured:
            lines.append(measured)
    else:
        lines.append(f"Top-1 accuracy: {NOT_MEASURED} (this run has no evaluate stage).")
    return head + "\n\n" + "\n\n".join(lines)


def _framings_note(ctx: Context) -> str:
    """Top-1 with the split's glyphs as stored and framed as NIST's EMNIST (``evaluation.emnist_framing``)."""
    rows = []
    for key, fmt in (("float", "Float"), ("int8", "Int8")):
        e = ctx.m.get(key)
        if isinstance(e, dict) and e.get("top1") is not None and e.get("top1_emnist_framing") is not None:
            rows.append([fmt, _pct(e["top1"]), _pct(e["top1_emnist_framing"])])
    if not rows:
        return ""
    framed = _get(ctx.cfg, "preprocessing", "aspect") == "emnist"
    how = ("The model frames every glyph as EMNIST does before it reads it (`preprocessing.aspect: emnist`, also "
           "applied by `mcuzoo predict`; firmware must do the same)" if framed else
           "The model reads glyphs as they are stored (no framing)")
    return (f"Handwriting comes in two framings: the glyphs as stored, and framed as NIST's EMNIST (cropped to "
            f"the ink, centred in a square with a 2-pixel border). {how}.\n\n"
            + _table(["Format", "Top 1 (%), glyphs as stored", "Top 1 (%), EMNIST framing"], rows))


def _runtimes_note(ctx: Context) -> str:
    """Which runtime measured which rows (recorded by runs since 2026-12): ONNX Runtime's int8 results of one
    file differ between its versions and CPUs."""
    seen: dict[str, list[str]] = {}
    from ..runtime import kernels_label

    for key, what in (("float", "Float"), ("int8", ".tflite"), ("onnx_qdq", "ONNX")):
        r = _get(ctx.m, key, "runtime")
        kernels = _get(ctx.m, key, "kernels")
        if key == "int8" and isinstance(kernels, str) and kernels:
            what += f", {kernels_label(kernels)}"
        if isinstance(r, str) and r:
            seen.setdefault(r, []).append(what)
    if not seen:
        return ""
    text = "Measured with " + ", ".join(f"{r} ({' and '.join(w)})" for r, w in seen.items()) + "."
    kernels = _get(ctx.m, "int8", "kernels")
    if kernels == "exact":
        engine = _get(ctx.m, "int8", "engine")
        on = {"tflm": "TensorFlow Lite Micro's interpreter (its reference kernels)",
              "litert-ref": "LiteRT's reference kernels, whose outputs are bit-identical to TensorFlow Lite Micro's"}
        text += (f" The int8 .tflite ran on {on.get(engine, on['litert-ref'])}: its top-1 is what the microcontroller "
                 "computes.")
    elif isinstance(kernels, str) and kernels:
        text += (f" The int8 .tflite ran on {kernels_label(kernels)}: its top-1 can differ from what TensorFlow Lite "
                 "Micro computes on the board (`evaluation.runtime: exact` measures that).")
    if any(r.startswith("onnxruntime") for r in seen):
        text += (" ONNX Runtime's int8 kernels differ between its versions and CPUs: the same QDQ file can score "
                 "a few tenths of a point differently elsewhere.")
    return text


def _mixed_note(ctx: Context) -> str:
    """How the mixed int4/int8 model was chosen (the search's own figures, on validation)."""
    mx = ctx.m.get("mixed")
    if not isinstance(mx, dict) or mx.get("tolerance") is None or mx.get("accuracy_int8") is None:
        return ""
    tol = 100 * float(mx["tolerance"])
    text = (f"The mixed int4/int8 model keeps the fewest weights in int8 whose validation top-1 stays within "
            f"{tol:g} points of the all-int8 model")
    if mx.get("drop_se") is not None and mx.get("drop") is not None:
        text += (f" with {100 * float(mx.get('confidence', 0.5)):g} % confidence (on the same validation images: "
                 f"{0.0 - 100 * float(mx['drop']):+.2f} ± {100 * float(mx['drop_se']):.2f} points against all-int8; "
                 "a gain counts as no loss)")
    elif mx.get("accuracy") is not None:
        text += f" ({_pct(mx['accuracy'])} % against {_pct(mx['accuracy_int8'])} %)"
    return text + "; the test split took no part in choosing it."


def confusion(ctx: Context) -> str:
    out = []
    from ..plots import CONFUSION_FLOAT_PNG, CONFUSION_INT8_PNG

    for fname, what in ((CONFUSION_FLOAT_PNG, "the model with Float32 weights"),
                        (CONFUSION_INT8_PNG, "the quantized model with INT8 weights")):
        if (ctx.run_dir / fname).is_file():
            out.append(f"Following we provide the confusion matrix (rows normalised to 100 %) for {what}.\n\n"
                       f"![confusion matrix, {what}]({fname})")
    if not out:
        out.append(f"Confusion matrices: {NOT_MEASURED}.")
    report = ctx.m.get("quant_report") or {}
    if report.get("png") and (ctx.run_dir / report["png"]).is_file():
        out.append(
            "Per-layer quantization error (float activations against the int8 model's dequantized ones on "
            f"calibration images, SQNR in dB, worst first; details in {_code(report.get('json', 'quant_report.json'))}):"
            f"\n\n![per-layer quantization error]({report['png']})"
        )
    return "\n\n".join(out)
