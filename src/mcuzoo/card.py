"""Model cards: ``MODEL_CARD.md`` of a run, in the structure of the STM32 model zoo cards.

Entry point: :func:`write_card`. Every figure on the card is read from the run's
artifacts, none is typed by hand:

- ``metrics.json``: dataset, split, accuracies, quantization settings, training time;
- ``config.yaml``: training settings and the command that reproduces the run;
- ``float_model.keras``: parameter and MAC counts;
- ``model_int8.tflite``: input / output shapes and types (read with LiteRT);
- ``analysis.json`` (``mcuzoo analyze``, optional): memory footprint, board fits,
  latency estimates and the measured host latency;
- ``confusion_*.png`` and ``training_curves.png`` (:mod:`mcuzoo.plots`).

A missing artifact leaves its section saying "not measured"; only a run without
``metrics.json`` is an error. CLI: ``mcuzoo card RUN_DIR`` (:func:`register_cli`).
"""
from __future__ import annotations

import re

import json
from pathlib import Path

from . import rundir
from .errors import McuzooError, RunDirError

__all__ = ["write_card", "render_card", "register_cli", "CARD_NAME"]

CARD_NAME = "MODEL_CARD.md"
NOT_MEASURED = "not measured"
# a card warns at its top when the float model gets less than this share of the way from guessing the most
# frequent class of the scored split to perfect: (top1 - chance) / (1 - chance)
USEFUL_CHANCE_CORRECTED = 0.25

# ---------------------------------------------------------------------------
# what the cards say about each architecture and dataset

_ZOO = "https://github.com/STMicroelectronics/stm32ai-modelzoo"

MODELS = {
    "st_mnist_v1": {
        "title": "ST MNIST v1",
        "description": (
            "ST MNIST v1 is a small convolutional network designed by STMicroelectronics for MNIST-type datasets "
            "(digit recognition, alphabet recognition, Fashion-MNIST, ...). It is built from depthwise separable "
            "convolutions: a strided 3x3 convolution (16 filters), a 3x3 depthwise convolution, a 3x3 convolution "
            "(32 filters), a strided 3x3 depthwise convolution and a 1x1 convolution (64 filters), each followed by "
            "batch normalisation and ReLU, then global average pooling, dropout and a softmax classifier. "
            "It is meant for 28 x 28 grey-scale images, the standard MNIST resolution."
        ),
        "paper": None,
        "origin": f"{_ZOO}/tree/main/image_classification/st_mnist",
    },
    "st_efficientnet_lc_v1": {
        "title": "ST EfficientNet LC v1",
        "description": (
            "EfficientNet was introduced in [this paper](https://arxiv.org/pdf/1905.11946.pdf): its authors scale "
            "depth, width and resolution together with a compound coefficient and, starting from a topology found "
            "by neural architecture search (B0), derive the variants B1 to B7. Its building blocks are the mobile "
            "inverted bottleneck MBConv (Sandler et al., 2018; Tan et al., 2019) with squeeze-and-excitation "
            "(Hu et al., 2018).\n\n"
            "B0 is already too large for STM32 microcontrollers, so STMicroelectronics derived a low-complexity "
            "(LC) variant aiming at about 500 kB of RAM and weights: 'swish' is replaced by 'relu6', the width "
            "coefficient is 0.45 and the expansion factor 3, and the squeeze-and-excitation logits are clipped to "
            "[-4, 4] before the sigmoid, which fixes the activation quantization problems of the original topology. "
            "In mcuzoo the clip is a named, serialisable Keras layer (`mcuzoo>ClipLogits`) rather than a Lambda, so "
            "saved models load with Keras' safe mode on."
        ),
        "paper": "https://arxiv.org/pdf/1905.11946.pdf",
        "origin": f"{_ZOO}/tree/main/image_classification/efficientnet",
    },
    "squeezenet_v1_0": {
        "title": "SqueezeNet v1.0",
        "description": (
            "SqueezeNet is a convolutional neural network that reduces the number of parameters with design "
            "strategies such as fire modules, which 'squeeze' the channels with 1x1 convolutions before expanding "
            "them again with parallel 1x1 and 3x3 convolutions. SqueezeNet v1.0 reaches AlexNet-level accuracy "
            "with 50x fewer parameters. This is the variant of the STM32 model zoo (128 x 128 input, batch "
            "normalisation after the squeeze convolutions, no fire8), quantized to int8."
        ),
        "paper": "https://arxiv.org/pdf/1602.07360.pdf",
        "origin": (f"the STM32 model zoo variant ({_ZOO}/tree/main/image_classification/squeezenetv1.0) of "
                   "https://github.com/forresti/SqueezeNet"),
    },
}

REFERENCES = {
    "emnist": [
        '"EMNIST : NIST Special Dataset," [Online]. Available: https://www.nist.gov/itl/products-and-services/emnist-dataset.',
        '"EMNIST: an extension of MNIST to handwritten letters". https://arxiv.org/abs/1702.05373',
    ],
    "flowers": [
        '"Tf_flowers : tensorflow datasets," TensorFlow. [Online]. Available: '
        "https://www.tensorflow.org/datasets/catalog/tf_flowers.",
    ],
    "plant": [
        'J, ARUN PANDIAN; GOPAL, GEETHARAMANI (2019), "Data for: Identification of Plant Leaf Diseases Using a '
        '9-layer Deep Convolutional Neural Network", Mendeley Data, V1, doi: 10.17632/tywbtsjrjv.1',
    ],
    "food101": [
        'L. Bossard, M. Guillaumin, and L. Van Gool, "Food-101 -- Mining Discriminative Components with Random '
        'Forests." European Conference on Computer Vision, 2014.',
    ],
}

DATASETS = {
    "emnist": ("EMNIST-Byclass", "[link](https://www.nist.gov/itl/products-and-services/emnist-dataset), by_class, "
               "digits [0-9] and capital letters [A-Z] (labels 0-35; lower-case letters dropped)"),
    "flowers": ("Flowers", "[link](http://download.tensorflow.org/example_images/flower_photos.tgz), License "
                "[CC BY 2.0](https://creativecommons.org/licenses/by/2.0/)"),
    "plant": ("Plant Village", "[link](https://data.mendeley.com/datasets/tywbtsjrjv/1), License "
              "[CC0 1.0](https://creativecommons.org/publicdomain/zero/1.0/)"),
    "food101": ("Food-101", "[link](https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/)"),
    "glyphs36": ("glyphs36", "mcuzoo's built-in synthetic dataset: digits 0-9 and letters A-Z rendered "
                 "from the fonts shipped with matplotlib, randomly distorted, deterministic for a seed. It is not "
                 "EMNIST: figures on it are not comparable with the EMNIST figures of the reference card"),
    "shapes": ("shapes", "mcuzoo's built-in synthetic dataset: coloured shapes on textured backgrounds, "
               "rendered at the model's input size. Figures on it are not comparable with any reference card"),
}

_FLOWERS = {"daisy", "dandelion", "rose", "roses", "sunflower", "sunflowers", "tulip", "tulips"}


def dataset_kind(name: str, path: str | None, class_names: list[str]) -> str | None:
    """Which known dataset a run used: emnist, flowers, plant, food101, glyphs36, shapes, or None."""
    name = (name or "").lower()
    if name.startswith("emnist"):
        return "emnist"
    if name in ("food101", "food-101"):
        return "food101"
    if name in ("glyphs36", "shapes"):
        return name
    low = {c.lower() for c in class_names}
    where = (path or "").lower().replace("-", "").replace("_", "")
    if low and low <= _FLOWERS or "flower" in where:
        return "flowers"
    if any("___" in c for c in class_names) or "plant" in where:
        return "plant"
    if "food101" in where:
        return "food101"
    return None


# ---------------------------------------------------------------------------
# small formatting helpers


def _kib(n) -> str:
    return NOT_MEASURED if n is None else f"{float(n) / 1024:,.2f} KiB"


def _size(n) -> str:
    """KiB up to 10 MiB, then MiB / GiB (headroom on MPU boards with DDR)."""
    if n is None:
        return NOT_MEASURED
    n = float(n)
    if abs(n) >= 10 * 2**30:
        return f"{n / 2**30:,.2f} GiB"
    if abs(n) >= 10 * 2**20:
        return f"{n / 2**20:,.2f} MiB"
    return f"{n / 1024:,.2f} KiB"


def _int(n) -> str:
    return NOT_MEASURED if n is None else f"{int(n):,}"


def _pct(x, digits: int = 2) -> str:
    return NOT_MEASURED if x is None else f"{100 * float(x):.{digits}f}"


def _ms(x) -> str:
    if x is None:
        return NOT_MEASURED
    x = float(x)
    return f"{x:.3f} ms" if x < 10 else f"{x:.2f} ms" if x < 1000 else f"{x:,.0f} ms"


def _affine(rescale, offset) -> str:
    """``pixel * 0.00784314 - 1`` for a rescale and an offset."""
    r, o = float(rescale), float(offset or 0.0)
    text = f"pixel * {r:.6g}"
    if o:
        text += f" {'-' if o < 0 else '+'} {abs(o):.6g}"
    return text


def _augmentation_text(aug) -> str:
    """The augmentations a config applies (those with a rate above 0), or 'none'."""
    if not aug:
        return "none"
    if not isinstance(aug, dict):
        return str(aug)
    active = []
    for name, spec in aug.items():
        if isinstance(spec, dict):
            rate = spec.get("rate")
            if isinstance(rate, (int, float)) and rate <= 0:
                continue
            params = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "rate")
            active.append(f"{name} (rate {rate}" + (f": {params})" if params else ")"))
    if not active:
        return "none (every augmentation rate is 0)"
    geometric = {"rotation", "translation", "zoom", "shear"}
    fill = aug.get("fill_mode")
    if fill and any(a.split(" ")[0] in geometric for a in active):
        active.append(f"fill mode {fill}")
    return "; ".join(active)


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("-" * (len(h) + 2) for h in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _read_optional_json(path: Path) -> tuple[dict | None, str | None]:
    """(data, problem): data is None when the file is missing or unreadable."""
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{path.name} is not valid JSON"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, None


def _read_config(path: Path) -> dict | None:
    if not path.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


# ---------------------------------------------------------------------------
# figures read from model files


def tflite_io(path: Path) -> dict | None:
    """Input/output shapes, dtypes and quantization of a .tflite, read with the LiteRT interpreter."""
    if not path.is_file():
        return None
    import numpy as np

    from .console import captured_output

    try:
        from ai_edge_litert.interpreter import Interpreter

        from .runtime import probe_tflite

        probe_tflite(path.read_bytes(), path)  # a model that crashes LiteRT: not measured, no crash here
        with captured_output():
            it = Interpreter(model_path=str(path))
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
    except Exception:  # noqa: BLE001 - an unreadable model: the section says not measured
        return None

    def desc(d):
        return {"shape": tuple(int(s) for s in d["shape"]), "dtype": np.dtype(d["dtype"]).name.upper(),
                "quantization": tuple(d.get("quantization", (0.0, 0)))}

    return {"input": desc(inp), "output": desc(out)}


def keras_counts(path: Path) -> dict | None:
    """Parameters (total, trainable) and MACs of a .keras model."""
    if not path.is_file():
        return None
    try:
        from .models import total_macs
        from .models import load_keras_model

        model = load_keras_model(path)
        trainable = int(sum(int(w.shape.num_elements() if hasattr(w.shape, "num_elements") else _numel(w.shape))
                            for w in model.trainable_weights))
        try:
            macs = int(total_macs(model))
        except Exception:  # noqa: BLE001 - a layer the MAC counter does not know
            macs = None
        return {"params": int(model.count_params()), "trainable": trainable, "macs": macs}
    except McuzooError:
        return None
    except Exception:  # noqa: BLE001
        return None


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


# ---------------------------------------------------------------------------
# the card


def write_card(run_dir: str | Path, *, plots: bool = True) -> Path:
    """Write ``MODEL_CARD.md`` into ``run_dir`` (after the plots, unless ``plots=False``); return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    if not (run_dir / rundir.METRICS).is_file():
        raise RunDirError(f"{run_dir} has no {rundir.METRICS}: run the evaluate stage first (mcuzoo run CONFIG)")
    if plots:
        from .plots import write_plots

        write_plots(run_dir)
    text = render_card(run_dir)
    return rundir.write_text(run_dir / CARD_NAME, text)


def render_card(run_dir: str | Path) -> str:
    """The Markdown text of the card of ``run_dir`` (reads the artifacts; writes nothing)."""
    run_dir = Path(run_dir)
    metrics = rundir.read_json(run_dir / rundir.METRICS)
    if not isinstance(metrics, dict):
        raise RunDirError(f"{run_dir / rundir.METRICS} does not hold a JSON object")
    cfg = _read_config(run_dir / rundir.CONFIG)
    info, _ = _read_optional_json(run_dir / rundir.MODEL_INFO)
    analysis, analysis_problem = _read_optional_json(run_dir / rundir.ANALYSIS)
    ctx = _Context(run_dir, metrics, cfg, info, analysis, analysis_problem)
    parts = [
        ctx.header(), ctx.description(), ctx.network_information(), ctx.inputs_outputs(), ctx.platforms(),
        "# Performances", ctx.metrics_intro(), ctx.memory(), ctx.latency(), ctx.accuracy(), ctx.confusion(),
        ctx.training(), ctx.reproduce(), ctx.references(),
    ]
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


def _qat_choice(qat: dict) -> str:
    """How the kept fine-tuning epoch compares with plain post-training int8 on validation."""
    drops = (f"int8 loses {100 * float(qat.get('val_drop', 0)):.2f} points against float there, "
             f"{100 * float(qat.get('val_drop_ptq', 0)):.2f} without it")
    if qat.get("val_kl") is None:  # runs from before the KL criterion
        return drops
    return (f"where its int8 outputs are nearest the float model's: KL divergence {float(qat['val_kl']):.5f}, "
            f"{float(qat.get('val_kl_ptq', 0)):.5f} without it; {drops}")


class _Context:
    def __init__(self, run_dir: Path, metrics: dict, cfg: dict | None, info: dict | None, analysis: dict | None,
                 analysis_problem: str | None):
        self.run_dir = run_dir
        self.m = metrics
        self.cfg = cfg or {}
        self.info = info or {}
        self.a = analysis
        self.a_problem = analysis_problem
        self.model = str(metrics.get("model") or self.info.get("model") or _get(self.cfg, "model", "name") or "model")
        spec = MODELS.get(self.model)
        self.spec = spec
        self.title = spec["title"] if spec else self.model
        self.shape = tuple(metrics.get("input_shape") or self.info.get("input_shape") or _get(self.cfg, "model", "input_shape") or ())
        self.res = "x".join(str(v) for v in self.shape) if self.shape else "-"
        self.class_names = [str(c) for c in (self.info.get("class_names") or list((metrics.get("float") or {}).get("per_class") or {}))]
        self.num_classes = metrics.get("num_classes") or (len(self.class_names) or None)
        self.dataset = str(metrics.get("dataset") or _get(self.cfg, "dataset", "name") or "")
        self.kind = dataset_kind(self.dataset, _get(self.cfg, "dataset", "path"), self.class_names)
        self.dataset_title = DATASETS[self.kind][0] if self.kind in DATASETS else (
            Path(str(_get(self.cfg, "dataset", "path") or self.dataset)).name or self.dataset)
        self.split = metrics.get("evaluation_split")
        self.io = tflite_io(run_dir / rundir.INT8_TFLITE)
        self.counts = keras_counts(run_dir / rundir.FLOAT_MODEL)
        self.tag = f"{self.title} tfs"

    # -- header and description ---------------------------------------------------------------
    def header(self) -> str:
        return (
            f"# {self.title}: {self.res}, {self.dataset_title}\n\n"
            + self._weak_model_warning()
            + "## **Use case** : `Image classification`\n\n"
            f"Card generated by mcuzoo from the artifacts of the run `{self.run_dir.name}`: every figure below is "
            "read from the run's files (`metrics.json`, `config.yaml`, the model files and, where present, "
            "`analysis.json`); a figure the run did not produce says *not measured*."
        )

    def _weak_model_warning(self) -> str:
        """A warning paragraph when the model is far below its split's chance level corrected to 0..1, else ''."""
        e = self.m.get("float") if isinstance(self.m.get("float"), dict) else self.m.get("int8")
        if not isinstance(e, dict) or e.get("top1") is None:
            return ""
        try:
            rows = [sum(int(v) for v in row) for row in e.get("confusion") or []]
            chance = max(rows) / sum(rows) if rows and sum(rows) else 1.0 / int(self.num_classes or 0)
        except (TypeError, ValueError, ZeroDivisionError):
            return ""
        top1 = float(e["top1"])
        score = (top1 - chance) / (1.0 - chance) if chance < 1.0 else 0.0
        if score >= USEFUL_CHANCE_CORRECTED:
            return ""
        return (f"> **Warning: this model is far below a usable accuracy.** Its top-1 on the {self.split or 'scored'} "
                f"split is {_pct(top1)} % against {_pct(chance)} % for always answering the most frequent class: it "
                f"gets {100 * score:.0f} % of the way from there to perfect (under {100 * USEFUL_CHANCE_CORRECTED:.0f} "
                "%). Train it longer before using it; the board fits below say only that it fits.\n\n")

    def description(self) -> str:
        spec = self.spec
        body = spec["description"] if spec else f"`{self.model}`: a model of the mcuzoo registry."
        shape = f" at {self.res}" if self.shape else ""
        prov = (
            f"**Provenance.** This model is mcuzoo's own reimplementation of the {self.title} architecture"
            + (f" ({spec['origin']})" if spec else "")
            + f", trained from scratch (`tfs`: weights randomly initialised){shape} on {self.dataset_title} by this "
            "run, then quantized to int8 by post-training quantization with the TensorFlow Lite converter. "
            "No pretrained weights and no files of the STM32 model zoo are used; the zoo's own models and cards are "
            "distributed by STMicroelectronics under its SLA0044 license, which does not describe this model."
        )
        return f"# Model description\n\n{body}\n\n{prov}"

    def network_information(self) -> str:
        q = self.m.get("quantization") or {}
        if q:
            gran = "per-channel" if q.get("per_channel", True) else "per-tensor"
            quant = f"int8 ({gran} weights, int8 activations; calibrated on {_int(q.get('calibration_images'))} training images)"
            qat = self.m.get("qat") or {}
            if qat.get("epoch"):
                quant += (f"; the int8 models are made from `{qat.get('file')}`, the float model after "
                          f"{qat['epoch']} of {qat.get('epochs')} epochs of quantization-aware fine-tuning by distillation "
                          f"(chosen on validation, {_qat_choice(qat)})")
            elif qat:
                quant += (f"; {qat.get('epochs')} epochs of quantization-aware fine-tuning were tried and not kept "
                          "(plain post-training int8 was nearest the float model on validation)")
        else:
            quant = f"{NOT_MEASURED} (this run has no quantization stage)"
        c = self.counts
        if c:
            params = f"{c['params']:,} ({c['trainable']:,} trainable, {c['params'] - c['trainable']:,} non-trainable)"
            macs = _int(c.get("macs")) + " (float model)"
        else:
            params = _int(_get(self.a, "params")) + (" (int8 graph)" if _get(self.a, "params") is not None else "")
            macs = _int(_get(self.a, "macs")) + (" (int8 graph)" if _get(self.a, "macs") is not None else "")
        rows = [["Framework", "TensorFlow Lite (int8, LiteRT) / Keras 3 (float)"], ["Params", params], ["MACs", macs]]
        if c and self.a and self.a.get("params") is not None:
            rows.append(["Params in the int8 graph", f"{int(self.a['params']):,} (batch normalisation folded into the convolutions)"])
        rows.append(["Quantization", quant])
        if q.get("size_bytes") is not None:
            rows.append(["int8 model file", f"`{q.get('file', rundir.INT8_TFLITE)}`, {_int(q['size_bytes'])} bytes"])
        if self.spec and self.spec["paper"]:
            rows.append(["Paper", self.spec["paper"]])
        if self.spec:
            rows.append(["Provenance", f"mcuzoo reimplementation of {self.spec['origin']}, trained from scratch"])
        return "## Network information\n\n" + _table(["Network Information", "Value"], rows)

    def inputs_outputs(self) -> str:
        out = ["## Network inputs / outputs"]
        io = self.io
        if io is None:
            out.append(f"Input / output: {NOT_MEASURED} (no readable `{rundir.INT8_TFLITE}` in this run).")
            return "\n\n".join(out)
        ishape, oshape = io["input"]["shape"], io["output"]["shape"]
        h, w, ch = (ishape[1:] + (0, 0, 0))[:3] if len(ishape) == 4 else (None, None, None)
        p = oshape[-1] if oshape else None
        names = ""
        if self.class_names and len(self.class_names) <= 40:
            names = ": " + ", ".join(f"`{n}`" for n in self.class_names)
        elif self.class_names:
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
            if "rescale" in self.info:
                pre = (f" The training preprocessing is `{_affine(self.info['rescale'], self.info.get('offset', 0.0))}`: "
                       "the quantized input is the raw camera pixel.")
            out.append(f"Input quantization (read from `{rundir.INT8_TFLITE}` with LiteRT): scale {scale:.6g}, "
                       f"zero point {zp}.{pre} Images are resized with {self.info.get('interpolation', 'bilinear')} "
                       "interpolation.")
        return "\n\n".join(out)

    def _no_analysis(self) -> str:
        if self.a is not None:
            return f"`{rundir.ANALYSIS}` holds no such figures: run `mcuzoo analyze` on the int8 model again"
        why = self.a_problem or f"this run has no `{rundir.ANALYSIS}`"
        return f"{why}: add the `analyze` stage to the config's `stages`, or run `mcuzoo analyze` on the int8 model"

    def platforms(self) -> str:
        head = "## Recommended platforms"
        boards = _get(self.a, "boards")
        if not isinstance(boards, dict) or not boards:
            return f"{head}\n\nNot analysed ({self._no_analysis()})."
        rows = []
        for name, b in boards.items():
            b = b if isinstance(b, dict) else {}
            core = str(b.get("core", "")).replace("cortex-", "Cortex-").replace("Cortex-m", "Cortex-M").replace("Cortex-a", "Cortex-A")
            core = f"{core} @ {b['mhz']} MHz" if b.get("mhz") else core or "-"
            fits = b.get("fits")
            mark = "[x]" if fits else "[]" if fits is not None else NOT_MEASURED
            if fits and b.get("warning"):
                mark += " *"
            flash = b.get("flash_headroom_bytes", "missing")
            flash_s = "no flash limit" if flash is None else (NOT_MEASURED if flash == "missing" else _size(flash))
            rows.append([b.get("series", "-"), name, core, mark, _size(b.get("ram_headroom_bytes")), flash_s])
        notes = [
            "Supported `[x]`: the int8 model fits the board according to mcuzoo's analysis: activation arena "
            "(input/output buffers included) plus the runtime's RAM within the board's RAM, and weights plus "
            "inference code within its flash. Headroom is what is left (negative: missing). These are mcuzoo's "
            "estimates, not STM32Cube.AI measurements.",
        ]
        warned = [f"{n}: {b['warning']}" for n, b in boards.items() if isinstance(b, dict) and b.get("fits") and b.get("warning")]
        notes += [f"\\* {w}" for w in warned]
        fits_on = self.a.get("fits_on")
        if isinstance(fits_on, list):
            notes.append("Fits on: " + (", ".join(fits_on) if fits_on else "none of the known boards") + ".")
        return (f"{head}\n\n"
                + _table(["Platform", "Board", "Core", "Supported", "RAM headroom", "Flash headroom"], rows)
                + "\n\n" + "\n\n".join(notes))

    # -- performances ---------------------------------------------------------------------------
    def metrics_intro(self) -> str:
        return (
            "## Metrics\n\n"
            "* Memory footprints and MCU inference times are **estimates** by mcuzoo's analysis of the int8 "
            "graph (`mcuzoo analyze`: its own memory planner and a latency model fitted on the reference cards), "
            "not STM32Cube.AI / STEdgeAI measurements on a board. Host latency is **measured** on the machine "
            "named in its row.\n\n"
            "* `tfs` stands for \"training from scratch\", meaning that the model weights were randomly initialized "
            "before training."
        )

    def memory(self) -> str:
        head = f"### Reference **MCU** memory footprint based on {self.dataset_title} (estimate, see Accuracy for details on dataset)"
        a = self.a
        if not a or a.get("activation_bytes") is None and a.get("weights_bytes") is None:
            return f"{head}\n\nMemory footprint: {NOT_MEASURED} ({self._no_analysis()})."
        rows = [[self.tag, "Int8", self.res, _kib(a.get("activation_bytes")), _kib(a.get("weights_bytes")),
                 _kib(a.get("activation_baseline_bytes")), _kib(a.get("activation_lower_bound_bytes")), "mcuzoo estimate"]]
        table = _table(["Model", "Format", "Resolution", "Activation RAM", "Weights Flash", "TFLM greedy arena",
                        "Arena lower bound", "Source"], rows)
        notes = []
        io_note = "counted in" if a.get("io_in_arena", True) else "not counted in"
        extra = ""
        if a.get("input_bytes") is not None and a.get("output_bytes") is not None:
            extra = f" (input {_kib(a['input_bytes'])}, output {_kib(a['output_bytes'])})"
        notes.append(f"The input and output buffers{extra} are {io_note} the activation RAM, as with STM32Cube.AI's "
                     "\"input / output allocated\" option of the reference cards.")
        planner = a.get("planner")
        notes.append("Activation RAM is the arena of mcuzoo's memory planner" + (f" (`{planner}`)" if planner else "")
                     + "; *TFLM greedy arena* is what TensorFlow Lite Micro's greedy planner would take for the same "
                     "graph, and the lower bound is the largest set of tensors alive at one operator. Kernel scratch "
                     "buffers and the runtime's own RAM are not included.")
        if a.get("quant_params_bytes") is not None:
            notes.append(f"Weights flash counts the constant tensors (int8 weights, int32 biases); quantization "
                         f"parameters add {_kib(a['quant_params_bytes'])}, inference code is not included.")
        return f"{head}\n\n{table}\n\n" + "\n\n".join(notes)

    def latency(self) -> str:
        head = f"### Reference **MCU** inference time based on {self.dataset_title} (see Accuracy for details on dataset)"
        a = self.a
        boards = _get(a, "boards")
        host = _get(a, "host_latency_ms")
        if not a or (not isinstance(boards, dict) and host is None):
            return f"{head}\n\nInference time: {NOT_MEASURED} ({self._no_analysis()})."
        lm = a.get("latency_model") or {}
        loo, fitted = lm.get("max_abs_loo_error_pct"), lm.get("max_abs_fitted_error_pct")
        if loo is not None:
            err = f"leave-one-out error up to {float(loo):.0f} % on the reference cards' measured rows"
        elif fitted is not None:
            err = f"fitted error up to {float(fitted):.0f} % on the reference cards' measured rows (no leave-one-out error)"
        else:
            err = "error of the latency model unknown (no calibration rows in analysis.json)"
        rows = []
        uncal = False
        for name, b in (boards or {}).items():
            if not isinstance(b, dict) or b.get("latency_ms_estimate") is None:
                continue
            kind = "*estimate*"
            if b.get("latency_calibrated") is False:
                kind += " (uncalibrated core)"
                uncal = True
            mhz = f"{b['mhz']} MHz" if b.get("mhz") else "-"
            rows.append([self.tag, "Int8", self.res, name, mhz, _ms(b["latency_ms_estimate"]), kind])
        host_name = self._host_name()
        for runtime, ms in self._host_rows(host):
            rows.append([self.tag, "Int8", self.res, f"host: {host_name}", "-", _ms(ms),
                         f"*measured* ({runtime}, batch 1" + (f", median of {a['host_runs']} runs" if a.get("host_runs") else "") + ")"])
        if not rows:
            return f"{head}\n\nInference time: {NOT_MEASURED} (no latency figures in `{rundir.ANALYSIS}`)."
        table = _table(["Model", "Format", "Resolution", "Board", "Frequency", "Inference time (ms)", "Kind"], rows)
        notes = [f"*estimate*: mcuzoo's latency model (cycles per MAC by layer kind, per output and per layer, fitted "
                 f"on the reference cards' measured times), {err}. Not a measurement on the board."]
        if uncal:
            notes.append("Uncalibrated cores have no measured reference rows: their coefficients are scaled from the "
                         "Cortex-M7 ones by CoreMark/MHz and are rougher still.")
        if not self._host_rows(host):
            notes.append(f"Host latency: {NOT_MEASURED}.")
        return f"{head}\n\n{table}\n\n" + "\n\n".join(notes)

    def _host_rows(self, host) -> list[tuple[str, float]]:
        if isinstance(host, dict):
            return [(str(k), float(v)) for k, v in host.items() if isinstance(v, (int, float))]
        if isinstance(host, (int, float)):
            return [(str(_get(self.a, "host_runtime") or "runtime not recorded"), float(host))]
        return []

    def _host_name(self) -> str:
        h = _get(self.a, "host")
        if isinstance(h, dict):
            parts = [str(h[k]) for k in ("cpu", "processor", "machine", "system", "platform", "cores", "threads")
                     if h.get(k) not in (None, "")]
            return ", ".join(parts) or "machine not recorded"
        if isinstance(h, str) and h.strip():
            return h.strip()
        return "machine not recorded in analysis.json"

    def _accuracy_rows(self) -> list[list[str]]:
        rows = []
        m = self.m

        def split_text(entry) -> str:
            split = entry.get("split") or self.split or "?"
            n = entry.get("n")
            if n is None and "split" not in entry:  # ONNX rows are scored on the run's evaluation split
                n = (m.get("float") or {}).get("n")
            return f"{split}, {n:,} images" if isinstance(n, int) else str(split)

        for key, fmt in (("float", "Float"), ("int8", "Int8")):
            e = m.get(key)
            if isinstance(e, dict) and e.get("top1") is not None:
                rows.append([f"[{self.tag}]({e.get('file', '')})" if e.get("file") else self.tag, fmt, self.res,
                             _pct(e["top1"]), split_text(e)])
        q = m.get("onnx_qdq")
        if isinstance(q, dict) and q.get("top1") is not None:
            rows.append([f"[{self.tag}]({q['file']})" if q.get("file") else self.tag, "Int8 (ONNX QDQ)", self.res,
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
                rows.append([f"[{self.tag}]({mx['file']})" if mx.get("file") else self.tag,
                             f"Int8/Int4 (ONNX QDQ{shares})", self.res, _pct(acc), split_text(entry)])
        return rows

    def accuracy(self) -> str:
        head = f"### Accuracy with {self.dataset_title} dataset"
        details = DATASETS[self.kind][1] if self.kind in DATASETS else f"`{self.dataset}` dataset"
        if self.kind not in DATASETS and _get(self.cfg, "dataset", "path"):
            details += f" from `{_get(self.cfg, 'dataset', 'path')}`"
        n_eval = _get(self.m, "float", "n") or _get(self.m, "int8", "n")
        split = self.split or NOT_MEASURED
        split_s = f"{split} split" + (f", {n_eval:,} images" if isinstance(n_eval, int) else "")
        if self.split == "validation":
            split_s += " (the dataset has no test split: the validation split also chose the best epoch, so this is optimistic)"
        lines = [f"Dataset details: {details}. Number of classes: {_int(self.num_classes)}. Evaluated on the {split_s}."]
        notes = [str(n) for n in (self.m.get("notes") or [])]
        if notes:
            lines.append("Dataset notes (from the run):\n\n" + "\n".join(f"- {n}" for n in notes))
        rows = self._accuracy_rows()
        if rows:
            lines.append(_table(["Model", "Format", "Resolution", "Top 1 Accuracy (%)", "Evaluated on"], rows))
            how = self._mixed_note()
            if how:
                lines.append(how)
            measured = self._runtimes_note()
            if measured:
                lines.append(measured)
        else:
            lines.append(f"Top-1 accuracy: {NOT_MEASURED} (this run has no evaluate stage).")
        return head + "\n\n" + "\n\n".join(lines)

    def _runtimes_note(self) -> str:
        """Which runtime measured which rows (recorded by runs since 2026-12): ONNX Runtime's int8 results of one
        file differ between its versions and CPUs."""
        seen: dict[str, list[str]] = {}
        for key, what in (("float", "Float"), ("int8", ".tflite"), ("onnx_qdq", "ONNX")):
            r = _get(self.m, key, "runtime")
            if isinstance(r, str) and r:
                seen.setdefault(r, []).append(what)
        if not seen:
            return ""
        text = "Measured with " + ", ".join(f"{r} ({' and '.join(w)})" for r, w in seen.items()) + "."
        if any(r.startswith("onnxruntime") for r in seen):
            text += (" ONNX Runtime's int8 kernels differ between its versions and CPUs: the same QDQ file can score "
                     "a few tenths of a point differently elsewhere.")
        return text

    def _mixed_note(self) -> str:
        """How the mixed int4/int8 model was chosen (the search's own figures, on validation)."""
        mx = self.m.get("mixed")
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

    def confusion(self) -> str:
        out = []
        from .plots import CONFUSION_FLOAT_PNG, CONFUSION_INT8_PNG

        for fname, what in ((CONFUSION_FLOAT_PNG, "the model with Float32 weights"),
                            (CONFUSION_INT8_PNG, "the quantized model with INT8 weights")):
            if (self.run_dir / fname).is_file():
                out.append(f"Following we provide the confusion matrix (rows normalised to 100 %) for {what}.\n\n"
                           f"![confusion matrix, {what}]({fname})")
        if not out:
            out.append(f"Confusion matrices: {NOT_MEASURED}.")
        report = self.m.get("quant_report") or {}
        if report.get("png") and (self.run_dir / report["png"]).is_file():
            out.append(
                "Per-layer quantization error (float activations against the int8 model's dequantized ones on "
                f"calibration images, SQNR in dB, worst first; details in `{report.get('json', 'quant_report.json')}`):"
                f"\n\n![per-layer quantization error]({report['png']})"
            )
        return "\n\n".join(out)

    def training(self) -> str:
        head = "## Training"
        t = _get(self.cfg, "training") or {}
        tm = self.m.get("training") or {}
        if not t and not tm:
            return f"{head}\n\nTraining settings: {NOT_MEASURED} (no `{rundir.CONFIG}` and no training figures)."
        rows = []
        if t:
            rows.append(["Optimizer", str(t.get("optimizer", NOT_MEASURED))])
            lr = t.get("learning_rate")
            kind = "peak" if (t.get("lr_schedule") or {}).get("name") == "cosine" else "initial"
            rows.append(["Learning rate", f"{lr:g} ({kind})" if isinstance(lr, (int, float)) else NOT_MEASURED])
            rows.append(["Batch size", _int(t.get("batch_size"))])
        if t.get("initial_weights"):
            rows.append(["Initial weights", f"`{t['initial_weights']}` (training continued from that model with a "
                                            "fresh optimizer; epochs below count this run only)"])
        epochs = f"{tm['epochs_run']} run" if tm.get("epochs_run") is not None else NOT_MEASURED
        if t.get("epochs") is not None:
            epochs += f" (at most {t['epochs']})"
        if tm.get("stopped_early"):
            epochs += ", stopped early"
        rows.append(["Epochs", epochs])
        if tm.get("best_epoch") is not None:
            best = f"{tm['best_epoch']}"
            if tm.get("best_val_accuracy") is not None:
                best += f" (validation accuracy {_pct(tm['best_val_accuracy'])} %)"
            rows.append(["Best epoch (kept)", best])
        if t:
            cbs = []
            rl, es = t.get("reduce_lr") or {}, t.get("early_stopping") or {}
            sch = t.get("lr_schedule") or {}
            if sch.get("name") == "cosine":
                warm = f"{sch.get('warmup_epochs', 0)} warm-up epochs, then " if sch.get("warmup_epochs") else ""
                cbs.append(f"learning rate: {warm}cosine decay to {sch.get('min_lr', 0.0)} at the last epoch")
            elif rl:
                cbs.append(f"ReduceLROnPlateau(monitor=val_accuracy, factor={rl.get('factor')}, patience={rl.get('patience')}, "
                           f"min_lr={rl.get('min_lr')})")
            if es:
                cbs.append(f"EarlyStopping(monitor=val_accuracy, patience={es.get('patience')})")
            cbs.append("best checkpoint on val_accuracy")
            rows.append(["Callbacks", ", ".join(cbs)])
            aug = t.get("augmentation", _get(self.cfg, "augmentation"))
            rows.append(["Augmentation", _augmentation_text(aug)])
            if t.get("seed") is not None:
                rows.append(["Seed", f"{t['seed']}" + (" (deterministic ops)" if t.get("deterministic") else "")])
            if t.get("distribution") not in (None, "none"):
                reps = f", {tm['replicas']} replicas" if tm.get("replicas") else ""
                rows.append(["Distribution", f"{t['distribution']}{reps}"])
            if t.get("mixed_precision") not in (None, "none"):
                rows.append(["Mixed precision", str(t["mixed_precision"])])
        pre = _get(self.cfg, "preprocessing") or {}
        if pre:
            rows.append(["Preprocessing", f"float input = {_affine(pre.get('rescale', 1.0), pre.get('offset', 0.0))}, "
                                          f"{pre.get('interpolation', 'bilinear')} resize"])
        d = _get(self.cfg, "dataset") or {}
        if d:
            rows.append(["Validation split", f"{float(d.get('validation_split', 0)) * 100:g} % of train, stratified, seed {d.get('seed')}"])
        rows.append(["Training time", f"{tm['seconds']:,} s" if tm.get("seconds") is not None else NOT_MEASURED])
        out = f"{head}\n\n" + _table(["Setting", "Value"], rows)
        from .plots import TRAINING_CURVES_PNG

        if (self.run_dir / TRAINING_CURVES_PNG).is_file():
            out += f"\n\n![training curves: loss, accuracy and learning rate per epoch]({TRAINING_CURVES_PNG})"
        return out

    def reproduce(self) -> str:
        if not (self.run_dir / rundir.CONFIG).is_file():
            return f"## How to reproduce\n\n{NOT_MEASURED}: this run has no `{rundir.CONFIG}`."
        out_dir = _get(self.cfg, "output_dir")
        name = _get(self.cfg, "name")
        where = f" into a new run directory under `{out_dir}` (`{name}2`, `{name}3`, ...)" if out_dir and name else ""
        path_note = ""
        if _get(self.cfg, "dataset", "path"):
            path_note = (f" The dataset is read from `{_get(self.cfg, 'dataset', 'path')}`: a relative path is taken "
                         "from the folder the command runs in.")
        stages = _get(self.cfg, "stages")
        what = ", ".join(stages) if isinstance(stages, list) and stages else "train, quantize, evaluate"
        return (
            "## How to reproduce\n\n"
            f"`{rundir.CONFIG}` beside this card is the run's resolved config (every default filled in). In this "
            "run directory:\n\n"
            "```bash\n"
            f"mcuzoo run {rundir.CONFIG}\n"
            "```\n\n"
            f"runs its stages again ({what}){where}.{path_note} A relative `output_dir` is also taken from the "
            "folder the command runs in. Training is seeded; float results can still differ slightly across "
            "machines and TensorFlow versions." + self._initial_weights_note() + self._extras_note()
        )

    def _initial_weights_note(self) -> str:
        init = _get(self.cfg, "training", "initial_weights")
        if not init:
            return ""
        return (f" Training starts from the weights in `{init}` (`training.initial_weights`), the best model of an "
                "earlier run: make that run first (its config is that run's `config.yaml`), or point the key at "
                "another copy of its `float_model.keras`.")

    def _extras_note(self) -> str:
        """How the ONNX models and the per-layer report were made when the config's stages did not make them."""
        q = _get(self.cfg, "quantization") or {}
        flags = [flag for key, flag, made_by_run in (("onnx_qdq", "--onnx", q.get("onnx")),
                                                     ("mixed", "--mixed", q.get("mixed")),
                                                     ("quant_report", "--report", q.get("report")))
                 if self.m.get(key) and not made_by_run]
        if not flags:
            return ""
        qdq = self.m.get("onnx_qdq") or self.m.get("mixed") or {}
        how = []
        if qdq.get("calibration_method"):
            how.append(f"{qdq['calibration_method']} calibration")
        if qdq.get("calibration_images"):
            how.append(f"{qdq['calibration_images']} training images")
        detail = f" ({', '.join(how)})" if how else ""
        what = {"--onnx": "the ONNX QDQ int8 model", "--mixed": "the mixed int4/int8 model",
                "--report": "the per-layer quantization report"}
        names = [what[f] for f in flags]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return (f"\n\n{listed[0].upper() + listed[1:]} {'is' if len(names) == 1 else 'are'} not made by the "
                f"config's stages: {'it was' if len(names) == 1 else 'they were'} made afterwards{detail} by:"
                f"\n\n```bash\nmcuzoo quantize RUN_DIR {' '.join(flags)}\n```")

    def references(self) -> str:
        refs = REFERENCES.get(self.kind or "", [])
        if not refs:
            what = DATASETS[self.kind][0] if self.kind in DATASETS else f"`{self.dataset}`"
            return f"# References\n\nNo external dataset reference: {what} is not a published dataset."
        body = "\n\n".join(f'<a id="{i}">[{i}]</a>\n{r}' for i, r in enumerate(refs, 1))
        return f"# References\n\n{body}"


# ---------------------------------------------------------------------------
# CLI


def register_cli(subparsers) -> None:
    """Add ``card RUN_DIR`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "card", help="write MODEL_CARD.md and its plots (confusion matrices, training curves) into a run directory",
    )
    p.add_argument("run_dir", help="run directory (holds metrics.json)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="do not (re)draw the PNG plots")
    p.set_defaults(fn=cmd_card)


def cmd_card(args) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    with rundir.RunLock(run_dir):  # a run still writing there is refused
        path = write_card(run_dir, plots=args.plots)
    print(path)
    return 0
