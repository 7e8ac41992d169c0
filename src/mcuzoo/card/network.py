"""Network information (parameters, MACs, quantization) and the network's inputs / outputs."""
from __future__ import annotations

from .. import rundir
from .context import Context
from .text import NOT_MEASURED, _affine, _code, _get, _int, _table


def _qat_choice(qat: dict) -> str:
    """How the kept fine-tuning epoch compares with plain post-training int8 on validation."""
    drops = (f"int8 loses {100 * float(qat.get('val_drop', 0)):.2f} points against float there, "
             f"{100 * float(qat.get('val_drop_ptq', 0)):.2f} without it")
    if qat.get("val_kl") is None:  # runs from before the KL criterion
        return drops
    return (f"where its int8 outputs are nearest the float model's: KL divergence {float(qat['val_kl']):.5f}, "
            f"{float(qat.get('val_kl_ptq', 0)):.5f} without it; {drops}")


def network_information(ctx: Context) -> str:
    q = ctx.m.get("quantization") or {}
    if q:
        gran = "per-channel" if q.get("per_channel", True) else "per-tensor"
        quant = f"int8 ({gran} weights, int8 activations; calibrated on {_int(q.get('calibration_images'))} training images)"
        qat = ctx.m.get("qat") or {}
        if qat.get("epoch"):
            quant += (f"; the int8 models are made from {_code(qat.get('file'))}, the float model after "
                      f"{qat['epoch']} of {qat.get('epochs')} epochs of quantization-aware fine-tuning by distillation "
                      f"(chosen on validation, {_qat_choice(qat)})")
        elif qat:
            quant += (f"; {qat.get('epochs')} epochs of quantization-aware fine-tuning were tried and not kept "
                      "(plain post-training int8 was nearest the float model on validation)")
    else:
        quant = f"{NOT_MEASURED} (this run has no quantization stage)"
    c = ctx.counts
    if c:
        params = f"{c['params']:,} ({c['trainable']:,} trainable, {c['params'] - c['trainable']:,} non-trainable)"
        macs = _int(c.get("macs")) + " (float model)"
    else:
        params = _int(_get(ctx.a, "params")) + (" (int8 graph)" if _get(ctx.a, "params") is not None else "")
        macs = _int(_get(ctx.a, "macs")) + (" (int8 graph)" if _get(ctx.a, "macs") is not None else "")
    rows = [["Framework", "TensorFlow Lite (int8, LiteRT) / Keras 3 (float)"], ["Params", params], ["MACs", macs]]
    if c and ctx.a and ctx.a.get("params") is not None:
        rows.append(["Params in the int8 graph", f"{int(ctx.a['params']):,} (batch normalisation folded into the convolutions)"])
    rows.append(["Quantization", quant])
    if q.get("size_bytes") is not None:
        rows.append(["int8 model file", f"{_code(q.get('file', rundir.INT8_TFLITE))}, {_int(q['size_bytes'])} bytes"])
    if ctx.spec and ctx.spec.paper:
        rows.append(["Paper", ctx.spec.paper])
    if ctx.spec:
        rows.append(["Provenance", f"mcuzoo reimplementation of {ctx.spec.origin}, trained from scratch"])
    return "## Network information\n\n" + _table(["Network Information", "Value"], rows)


def inputs_outputs(ctx: Context) -> str:
    out = ["## Network inputs / outputs"]
    io = ctx.io
    if io is None:
        out.append(f"Input / output: {NOT_MEASURED} (no readable `{rundir.INT8_TFLITE}` in this run).")
        return "\n\n".join(out)
    ishape, oshape = io["input"]["shape"], io["output"]["shape"]
    h, w, ch = (ishape[1:] + (0, 0, 0))[:3] if len(ishape) == 4 else (None, None, None)
    p = oshape[-1] if oshape else None
    names = ""
    if ctx.class_names and len(ctx.class_names) <= 40:
        names = ": " + ", ".join(_code(n) for n in ctx.class_names)
    elif ctx.class_names:
        names = f" (names in `{rundir.MODEL_INFO}`)"
    out.append(f"For an image resolution of {h}x{w} and {p} classes{names}")
    color = "grey-scale" if ch == 1 else "RGB" if ch == 3 else f"{ch}-channel"
    idt, odt = io["input"]["dtype"], io["output"]["dtype"]
    rng = " values between 0 and 255" if idt == "UINT8" else (" values between -128 and 127" if idt == "INT8" else " values")
    out.append(_table(["Input Shape", "Description"],
                      [[str(ishape), f"Single {h}x{w} {color} image with {idt}{rng}"]]))
    out.append(_table(["Output Shape", "Description"],
                      [[str(oshape), f"Per-class confidence for {p} classes in {odt}"]]))
    scale, zp = io["input"]["quantization"]
    if idt in ("UINT8", "INT8") and scale:
        pre = ""
        if "rescale" in ctx.info:
            pre = (f" The training preprocessing is `{_affine(ctx.info['rescale'], ctx.info.get('offset', 0.0))}`: "
                   "the quantized input is the raw camera pixel.")
        out.append(f"Input quantization (read from `{rundir.INT8_TFLITE}` with LiteRT): scale {scale:.6g}, "
                   f"zero point {zp}.{pre} Images are resized with {ctx.info.get('interpolation', 'bilinear')} "
                   "interpolation.")
    return "\n\n".join(out)
