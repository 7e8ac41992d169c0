"""Per-layer quantization error: where the int8 model departs from the float one.

Entry points: :func:`quant_report` (float Keras model vs int8 .tflite on
calibration images, one :class:`LayerError` per matched layer, worst first),
:func:`write_report` (JSON + PNG bar chart of SQNR per layer) and
:func:`report_table` (the table ``mcuzoo quantize --report`` prints).

Errors are measured on the whole int8 model, so a layer's error includes what
earlier layers passed on: SQNR = 10 log10(sum f^2 / sum (f - q)^2) in dB over
all images (higher is better; about 6 dB per bit), and the cosine similarity of
the flattened activations. ``q`` is the int8 tensor dequantized with its own
scale and zero point.

Matching Keras layers to TFLite tensors. The converter fuses layers (Conv +
BatchNorm + ReLU become one CONV_2D) and names each tensor after the TensorFlow
ops that produced it, ``;``-joined, e.g.
``model_1/conv1_relu_1/Relu;model_1/conv1_bn_1/batchnorm/add_1;...``. Each path
segment is compared with the Keras layer names, exactly and without a trailing
``_<n>`` (Keras/TF add it to name scopes when a model is traced again); the
model's own scope is ignored. For every tensor that an op writes (in execution
order) the candidate layers are kept when their output shape equals the
tensor's shape and, for a layer with a built-in activation (``Dense(...,
activation="softmax")``), when the tensor's ops include that activation (the
FULLY_CONNECTED output before the SOFTMAX op is not the layer's output). Of the
remaining candidates the one latest in the Keras graph wins (a fused
conv/bn/relu tensor is the ReLU layer's output); when several tensors give the
same layer, the last one executed wins. A tensor named after a convolution
alone whose only consumer is a BatchNormalization without a tensor of its own
is the BatchNorm's output (the converter folds it in). The model's output layer, if not
matched by name, is matched to the TFLite output. Layers without a tensor of
their own in the int8 model (a convolution or BatchNorm fused away, Dropout,
Input) are skipped and listed; the report says how many layers were matched.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..console import captured_output
from ..errors import McuzooError, ModelFileError, first_line
from ..runtime import check_tflite_identifier
from .calibration import Calibration

REPORT_JSON = "quant_report.json"
REPORT_PNG = "quant_report.png"
SQNR_CAP_DB = 120.0  # a layer reproduced exactly (no noise at all) reports this
_SUFFIX = re.compile(r"^(.*)_\d+$")


@dataclass
class LayerError:
    layer: str
    layer_type: str
    order: int            # position of the layer in the Keras model
    shape: list[int]      # output shape without the batch dimension
    sqnr_db: float
    cosine: float
    rmse: float
    max_abs_error: float
    signal_rms: float
    tensor: str           # the TFLite tensor (first name component)
    tflite_op: str


class LayerErrors(list):
    """A list of :class:`LayerError`, worst SQNR first, with how the matching went."""

    def __init__(self, rows=(), layers_total: int = 0, unmatched: list[str] | None = None, images: int = 0,
                 model: str = "", tflite: str = ""):
        super().__init__(rows)
        self.layers_total = layers_total
        self.unmatched = list(unmatched or [])
        self.images = images
        self.model = model
        self.tflite = tflite

    @property
    def matched(self) -> int:
        return len(self)

    def summary(self, worst: int = 5) -> dict:
        return {
            "images": self.images, "layers": self.layers_total, "matched": self.matched,
            "worst": [{"layer": e.layer, "sqnr_db": round(e.sqnr_db, 2), "cosine": round(e.cosine, 5)}
                      for e in self[:worst]],
        }


# ---------------------------------------------------------------------------
# matching


def _strip(seg: str) -> str | None:
    m = _SUFFIX.match(seg)
    return m.group(1) if m else None


def _activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    name = getattr(act, "__name__", str(act)).lower()
    return None if name in ("linear", "identity") else name


def _components(tensor_name: str, layer_names: set[str], model_name: str, prefer_stripped: bool):
    """{layer name: [op parts below the layer's scope]} for the layers a TFLite tensor name mentions."""
    found: dict[str, list[str]] = {}
    for comp in tensor_name.split(";"):
        segs = comp.split("/")
        for j, seg in enumerate(segs):
            if j == 0 and (seg == model_name or _strip(seg) == model_name) and len(segs) > 1:
                continue
            stripped = _strip(seg)
            order = [stripped, seg] if prefer_stripped else [seg, stripped]
            for cand in order:
                if cand and cand in layer_names:
                    found.setdefault(cand, []).append("/".join(segs[j + 1:]).lower())
                    break
            else:
                continue
            break
    return found


def _dequantize(arr: np.ndarray, detail: dict) -> np.ndarray:
    if arr.dtype in (np.float32, np.float64, np.float16):
        return arr.astype(np.float64)
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.float64)
    if scales.size == 0:
        scale, zp = detail.get("quantization", (0.0, 0))
        if not scale:
            return arr.astype(np.float64)
        return (arr.astype(np.float64) - zp) * scale
    if scales.size == 1:
        return (arr.astype(np.float64) - (zps[0] if zps.size else 0)) * scales[0]
    axis = int(qp.get("quantized_dimension", arr.ndim - 1))
    shape = [1] * arr.ndim
    shape[axis] = -1
    return (arr.astype(np.float64) - zps.reshape(shape)) * scales.reshape(shape)


def _metrics(f: np.ndarray, q: np.ndarray) -> tuple[float, float, float, float, float]:
    f = f.astype(np.float64).ravel()
    q = q.astype(np.float64).ravel()
    err = f - q
    sig, noise = float(np.dot(f, f)), float(np.dot(err, err))
    if noise == 0.0:
        sqnr = SQNR_CAP_DB
    elif sig == 0.0:
        sqnr = -SQNR_CAP_DB
    else:
        sqnr = float(np.clip(10.0 * math.log10(sig / noise), -SQNR_CAP_DB, SQNR_CAP_DB))
    nf, nq = math.sqrt(sig), float(np.linalg.norm(q))
    cos = float(np.dot(f, q) / (nf * nq)) if nf > 0 and nq > 0 else (1.0 if nf == nq else 0.0)
    n = max(1, f.size)
    return sqnr, cos, math.sqrt(noise / n), float(np.abs(err).max()) if f.size else 0.0, math.sqrt(sig / n)


def _tflite_interpreter(path: Path, n: int, shape):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data = path.read_bytes() if path.is_file() else b""
    if not path.is_file():
        raise ModelFileError(f"int8 model not found: {path}")
    check_tflite_identifier(data, path)
    try:
        with captured_output():
            interp = Interpreter(
                model_content=data, experimental_preserve_all_tensors=True,
                # the reference kernels: the int8 tensors are TFLM's (the MCU's), bit for bit; the default
                # XNNPACK delegate would also swallow intermediate tensors
                experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
            )
            inp = interp.get_input_details()[0]
            interp.resize_tensor_input(inp["index"], (n, *shape))
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(f"cannot load {path}: {first_line(e)}") from None
    return interp


def _keras_layers(model) -> dict[str, tuple[int, Any, tuple[int, ...]]]:
    """{layer name: (position in the model, layer, output shape without the batch)} of every layer with one
    tensor output."""
    import keras

    by_name = {}
    for idx, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError, RuntimeError):  # shared layer or nested model
            continue
        if isinstance(out, (list, tuple, dict)):
            continue
        by_name[layer.name] = (idx, layer, tuple(int(d) if d is not None else -1 for d in out.shape[1:]))
    return by_name


def _best_layer(found: dict[str, list[str]], by_name: dict, tshape: tuple) -> str | None:
    """Of the layers a tensor name mentions, the latest in the Keras graph whose output shape and built-in
    activation fit the tensor (see the module doc)."""
    best = None
    for lname, parts in found.items():
        idx, layer, lshape = by_name[lname]
        if lshape != tshape:
            continue
        act = _activation_name(layer)
        if act and not any(act in p.replace("_", "") or act in p for p in parts):
            continue  # the tensor before the layer's activation
        if best is None or idx > by_name[best][0]:
            best = lname
    return best


def _match_by_name(ops: list, details: dict, by_name: dict, model_name: str) -> dict[str, tuple[int, str, int]]:
    """{layer: (tensor index, op name, execution order)} from the TFLite tensor names; the last tensor wins."""
    first_names = [details[t]["name"].split(";")[0].split("/")[0] for op in ops for t in op["outputs"] if t in details]
    prefer_stripped = any(_strip(s) == model_name for s in first_names)
    names = set(by_name)
    match: dict[str, tuple[int, str, int]] = {}
    for exec_order, op in enumerate(ops):
        for t in op["outputs"]:
            d = details.get(int(t))
            if d is None:
                continue
            found = _components(d["name"], names, model_name, prefer_stripped)
            best = _best_layer(found, by_name, tuple(int(v) for v in d["shape"][1:]))
            if best is not None:
                match[best] = (int(t), op["op_name"], exec_order)
    return match


def _fold_batchnorms(match: dict, by_name: dict) -> None:
    """A BatchNormalization right after a conv/dense is folded into it by the converter: when the fused tensor
    is named after the conv only, it holds the BatchNorm's output."""
    import keras

    for lname in list(match):
        layer = by_name[lname][1]
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            continue
        consumers = [n.operation for n in getattr(layer, "_outbound_nodes", [])]
        if len(consumers) == 1 and isinstance(consumers[0], keras.layers.BatchNormalization):
            bn = consumers[0].name
            if bn in by_name and bn not in match and by_name[bn][2] == by_name[lname][2]:
                match[bn] = match.pop(lname)


def _match_layers(interp, model, by_name: dict, tflite_name: str) -> tuple[dict, dict]:
    """(the layer -> tensor match, LiteRT's tensor details by index); see the module doc."""
    try:
        ops = interp._get_ops_details()
    except AttributeError:  # pragma: no cover - every LiteRT so far has it
        raise McuzooError("this LiteRT version does not list its ops: cannot match layers") from None
    details = {d["index"]: d for d in interp.get_tensor_details()}
    match = _match_by_name(ops, details, by_name, model.name)
    _fold_batchnorms(match, by_name)
    out_layer = model.layers[-1].name
    out_index = interp.get_output_details()[0]["index"]
    if out_layer in by_name and out_layer not in match:
        if tuple(int(v) for v in details[out_index]["shape"][1:]) == by_name[out_layer][2]:
            match[out_layer] = (out_index, "OUTPUT", len(ops))
    if not match:
        raise McuzooError(f"no layer of the Keras model could be matched to a tensor of {tflite_name}: "
                          "is it the int8 conversion of this model?")
    return match, details


def _run_both(model, interp, layers: list, images: np.ndarray, calibration: Calibration) -> list:
    """The float outputs of ``layers`` on ``images``; the int8 model is run on them too (its tensors kept)."""
    import keras

    x_float = calibration.model_input(images)
    probe = keras.Model(model.inputs, [layer.output for _, layer, _ in layers])
    with captured_output():
        f_outs = probe.predict(x_float, batch_size=16, verbose=0)
    if not isinstance(f_outs, (list, tuple)):
        f_outs = [f_outs]
    inp = interp.get_input_details()[0]
    if inp["dtype"] == np.uint8:
        feed = images
    elif inp["dtype"] == np.int8:
        s, z = inp["quantization"]
        feed = np.clip(np.round(x_float / s + z), -128, 127).astype(np.int8)
    else:
        feed = x_float.astype(inp["dtype"])
    interp.set_tensor(inp["index"], feed)
    interp.invoke()
    return list(f_outs)


def quant_report(
    float_keras_model_or_path,
    int8_tflite_path: str | Path,
    calibration: Calibration,
    max_images: int = 64,
) -> LayerErrors:
    """Per-layer SQNR / cosine between the float Keras model and the int8 .tflite on the first ``max_images``
    calibration images (as drawn), worst first."""
    import keras

    from ..models import load_keras_model

    images = calibration.drawn[: max(1, int(max_images))].astype(np.uint8)
    model = (load_keras_model(float_keras_model_or_path)
             if isinstance(float_keras_model_or_path, (str, Path)) else float_keras_model_or_path)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if tuple(images.shape[1:]) != shape:
        raise McuzooError(f"report images are {tuple(images.shape[1:])} but the model takes {shape}")
    int8_tflite_path = Path(int8_tflite_path)
    interp = _tflite_interpreter(int8_tflite_path, len(images), shape)
    by_name = _keras_layers(model)
    match, details = _match_layers(interp, model, by_name, int8_tflite_path.name)
    matched_layers = [by_name[n] for n in sorted(match, key=lambda n: by_name[n][0])]
    f_outs = _run_both(model, interp, matched_layers, images, calibration)
    rows = []
    for (idx, layer, lshape), f in zip(matched_layers, f_outs):
        t, op_name, _ = match[layer.name]
        q = _dequantize(np.asarray(interp.get_tensor(t)), details[t])
        if q.shape != np.asarray(f).shape:
            continue
        sqnr, cos, rmse, mae, rms = _metrics(np.asarray(f), q)
        rows.append(LayerError(layer.name, type(layer).__name__, idx, list(lshape), sqnr, cos, rmse, mae, rms,
                               details[t]["name"].split(";")[0][:120], op_name))
    rows.sort(key=lambda r: (r.sqnr_db, r.order))
    got = {r.layer for r in rows}
    inner = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    unmatched = [layer.name for layer in inner if layer.name not in got]
    return LayerErrors(rows, len(inner), unmatched, len(images), model.name, int8_tflite_path.name)


# ---------------------------------------------------------------------------
# output


def report_table(errors: LayerErrors, limit: int | None = None):
    from rich.console import JustifyMethod
    from rich.table import Table

    title = f"quantization error per layer, worst first ({errors.matched} of {errors.layers_total} layers matched, " \
            f"{errors.images} images)"
    table = Table(title=title)
    rows = list(errors[:limit] if limit else errors)
    shapes = ["x".join(map(str, e.shape)) for e in rows]
    # numbers are never cut: the layer name folds and the type is shortened first on a narrow terminal
    widths = {"#": len(str(len(rows))), "shape": max(map(len, shapes), default=5), "SQNR dB": 7, "cosine": 6,
              "RMSE": 6, "layer": 12}
    just: JustifyMethod
    for col, just in (("#", "right"), ("layer", "left"), ("type", "left"), ("shape", "left"),
                      ("SQNR dB", "right"), ("cosine", "right"), ("RMSE", "right")):
        if col == "type":
            table.add_column(col, justify=just, no_wrap=True, overflow="ellipsis", max_width=14, min_width=4)
        else:
            table.add_column(col, justify=just, no_wrap=col != "layer", overflow="fold", min_width=widths[col])
    for i, (e, shape) in enumerate(zip(rows, shapes), start=1):
        color = "red" if e.sqnr_db < 10 else "yellow" if e.sqnr_db < 20 else "green"
        table.add_row(str(i), e.layer, e.layer_type, shape,
                      f"[{color}]{e.sqnr_db:.1f}[/]", f"{e.cosine:.4f}", f"{e.rmse:.3g}")
    return table


def write_report(errors: LayerErrors, png_path: str | Path, json_path: str | Path, title: str | None = None
                 ) -> tuple[Path, Path]:
    """JSON of every row and a bar chart of SQNR per layer (worst at the top); both written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(errors)
    payload = {
        "model": getattr(errors, "model", ""), "tflite": getattr(errors, "tflite", ""),
        "images": getattr(errors, "images", 0), "layers": getattr(errors, "layers_total", len(rows)),
        "matched": len(rows), "unmatched": list(getattr(errors, "unmatched", [])),
        "metric": "SQNR = 10 log10(sum f^2 / sum (f - q)^2) over all images, dB; cosine of flattened activations",
        "matching": "TFLite tensor names (Keras layer scopes, fused ops ';'-joined) + output shape + built-in "
                    "activation; latest Keras layer per tensor, last tensor per layer; a conv's tensor "
                    "goes to the BatchNorm folded into it",
        "rows": [{**asdict(r), "sqnr_db": round(r.sqnr_db, 3), "cosine": round(r.cosine, 6)} for r in rows],
    }
    json_path = rundir.write_json(json_path, payload)

    n = max(1, len(rows))
    fig_h = min(60.0, 1.2 + 0.22 * n)
    fig, ax = plt.subplots(figsize=(8.5, fig_h))
    if rows:
        vals = [r.sqnr_db for r in rows]
        colors = ["#c0392b" if v < 10 else "#e67e22" if v < 20 else "#27ae60" for v in vals]
        y = np.arange(len(rows))
        ax.barh(y, vals, color=colors)
        ax.set_yticks(y)
        ax.set_yticklabels([r.layer for r in rows], fontsize=7 if n > 40 else 8)
        ax.invert_yaxis()  # worst at the top
        for yi, v in zip(y, vals):
            ax.text(max(v, 0) + 0.3, float(yi), f"{v:.1f}", va="center", fontsize=6 if n > 40 else 7)
    else:
        ax.text(0.5, 0.5, "no layer matched", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("SQNR (dB), float vs int8 activations; higher is better")
    ax.set_title(title or f"{payload['model']} int8: per-layer SQNR, worst first "
                          f"({len(rows)} of {payload['layers']} layers matched)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    png_path = Path(png_path)
    with rundir.atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return png_path, json_path
