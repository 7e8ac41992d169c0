"""The run a card describes: its artifacts read once (:class:`Context`), and the figures read from model files."""
from __future__ import annotations

import os
from pathlib import Path

from .. import rundir
from ..errors import ConfigError, McuzooError
from ..layouts import DATASETS, known_dataset
from .text import _get

__all__ = ["Context", "tflite_io", "keras_counts"]


def tflite_io(path: Path) -> dict | None:
    """Input/output shapes, dtypes and quantization of a .tflite, read with the LiteRT interpreter."""
    if not path.is_file():
        return None
    import numpy as np

    from ..console import captured_output

    try:
        from ai_edge_litert.interpreter import Interpreter

        from ..runtime import probe_tflite

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
        from ..models import total_macs
        from ..models import load_keras_model

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


def model_card(name: str):
    """What the model registry says about ``name`` for its card (a :class:`mcuzoo.models.ModelCard`), or None."""
    from ..models import get_model_spec

    try:
        return get_model_spec(name).card
    except ConfigError:  # not a model of this mcuzoo
        return None


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _read_optional_json(path: Path) -> tuple[dict | None, str | None]:
    """(data, problem): data is None when the file is missing or unreadable."""
    if not path.is_file():
        return None, None
    try:
        data = rundir.parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None, f"{path.name} is not valid JSON"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, None


def _read_config(path: Path) -> dict | None:
    """The run's config.yaml as written (None when there is none), read like every config (``config.read_yaml``:
    no Python tags, no key twice); one that cannot be read is a ConfigError, not a card without its recipe."""
    if not os.path.lexists(path):
        return None
    from ..config import read_yaml

    data = read_yaml(path)
    return data if isinstance(data, dict) else None


class Context:
    """The facts of one run that every section reads (built once by :func:`mcuzoo.card.render_card`)."""

    def __init__(self, run_dir: Path, metrics: dict, cfg: dict | None, info: dict | None, analysis: dict | None,
                 analysis_problem: str | None):
        self.run_dir = run_dir
        self.m = metrics
        self.cfg = cfg or {}
        self.info = info or {}
        self.a = analysis
        self.a_problem = analysis_problem
        self.model = str(metrics.get("model") or self.info.get("model") or _get(self.cfg, "model", "name") or "model")
        spec = model_card(self.model)
        self.spec = spec
        self.title = spec.title if spec else self.model
        self.shape = tuple(metrics.get("input_shape") or self.info.get("input_shape") or _get(self.cfg, "model", "input_shape") or ())
        self.res = "x".join(str(v) for v in self.shape) if self.shape else "-"
        self.class_names = [str(c) for c in (self.info.get("class_names") or list((metrics.get("float") or {}).get("per_class") or {}))]
        self.num_classes = metrics.get("num_classes") or (len(self.class_names) or None)
        self.dataset = str(metrics.get("dataset") or _get(self.cfg, "dataset", "name") or "")
        self.kind = known_dataset(self.dataset, _get(self.cfg, "dataset", "path"), self.class_names)
        self.dataset_title = DATASETS[self.kind].title if self.kind in DATASETS else (
            Path(str(_get(self.cfg, "dataset", "path") or self.dataset)).name or self.dataset)
        self.split = metrics.get("evaluation_split")
        self.io = tflite_io(run_dir / rundir.INT8_TFLITE)
        self.counts = keras_counts(run_dir / rundir.FLOAT_MODEL)
        self.tag = f"{self.title} tfs"

    def no_analysis(self) -> str:
        if self.a is not None:
            return f"`{rundir.ANALYSIS}` holds no such figures: run `mcuzoo analyze` on the int8 model again"
        why = self.a_problem or f"this run has no `{rundir.ANALYSIS}`"
        return f"{why}: add the `analyze` stage to the config's `stages`, or run `mcuzoo analyze` on the int8 model"
