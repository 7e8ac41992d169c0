"""The one config schema of mcuzoo, validated once.

A config is a YAML file (data only: it is read with ``yaml.safe_load`` and never
evaluated) plus ``key=value`` overrides from the command line, such as
``training.epochs=3``. Every section forbids unknown keys, so a typo is an error
that names the key and lists what is allowed, never a silently ignored setting.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

STAGES = ("train", "quantize", "evaluate", "analyze", "card")
DATASET_KINDS = ("glyphs36", "shapes", "emnist_byclass", "folder", "food101")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = "st_mnist_v1"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0, description="top dropout; None: the model's default")

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v):
        h, w, c = v
        if c not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {c}")
        if h < 8 or w < 8 or h > 1024 or w > 1024:
            raise ValueError(f"height and width must be between 8 and 1024, got {h}x{w}")
        return v


class DatasetConfig(_Section):
    name: Literal["glyphs36", "shapes", "emnist_byclass", "folder", "food101"] = "glyphs36"
    path: Optional[str] = Field(None, description="dataset root for emnist_byclass, folder and food101")
    test_path: Optional[str] = Field(None, description="separate class-per-folder test set (folder datasets)")
    validation_split: float = Field(0.1, gt=0.0, lt=0.9)
    test_split: float = Field(0.0, ge=0.0, lt=0.9, description="hold out a test split from train when the dataset has none")
    samples_per_class: int = Field(300, ge=1, le=100_000, description="built-in datasets: training images per class")
    max_per_class: Optional[int] = Field(None, ge=1, description="cap images per class (quick runs)")
    seed: int = 0

    @model_validator(mode="after")
    def _needs_path(self):
        if self.name in ("emnist_byclass", "folder", "food101") and not self.path:
            raise ValueError(f"dataset '{self.name}' needs dataset.path")
        if self.validation_split + self.test_split >= 0.95:
            raise ValueError("validation_split + test_split leave no training data")
        return self


class PreprocessingConfig(_Section):
    rescale: float = Field(1 / 127.5, gt=0.0, description="float input = pixel * rescale + offset")
    offset: float = -1.0
    interpolation: Literal["bilinear", "nearest", "bicubic", "area"] = "bilinear"


class ReduceLRConfig(_Section):
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(40, ge=1)
    min_lr: float = Field(1e-5, ge=0.0)


class EarlyStoppingConfig(_Section):
    patience: int = Field(60, ge=1)


class ClusterConfig(_Section):
    """Workers of a multi_worker run (used when the TF_CONFIG variable is not set)."""

    workers: list[str] = Field(..., min_length=1, description="host:port of every worker, chief first")
    task_index: int = Field(0, ge=0, description="this process's index in workers")

    @model_validator(mode="after")
    def _index(self):
        if self.task_index >= len(self.workers):
            raise ValueError(f"task_index {self.task_index} is out of range for {len(self.workers)} workers")
        for w in self.workers:
            host, _, port = w.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"worker '{w}' is not host:port")
        return self


class TrainingConfig(_Section):
    epochs: int = Field(20, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(0.01, gt=0.0, le=10.0)
    reduce_lr: ReduceLRConfig = ReduceLRConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    seed: int = 0
    verbose: bool = True
    deterministic: bool = True
    distribution: Literal["none", "mirrored", "multi_worker"] = "none"
    cpu_devices: Optional[int] = Field(None, ge=1, le=64, description="split the CPU into N logical devices (mirrored without GPUs)")
    cluster: Optional[ClusterConfig] = None
    scale_learning_rate: bool = Field(True, description="multiply learning_rate by the number of replicas")
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = "none"


class QuantizationConfig(_Section):
    per_channel: bool = True
    calibration_samples: int = Field(200, ge=1, le=100_000)


class EvaluationConfig(_Section):
    batch_size: int = Field(256, ge=1, le=65_536)


class Config(_Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    output_dir: str = "runs"
    stages: list[Literal["train", "quantize", "evaluate", "analyze", "card"]] = ["train", "quantize", "evaluate"]
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig = DatasetConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    training: TrainingConfig = TrainingConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    @field_validator("stages")
    @classmethod
    def _stages(cls, v):
        if not v:
            raise ValueError("at least one stage is needed")
        if len(set(v)) != len(v):
            raise ValueError("a stage is listed twice")
        return sorted(v, key=STAGES.index)


# ---------------------------------------------------------------------------
# loading, overrides and one-line errors


def _allowed_keys(model_cls: type[BaseModel], path: tuple) -> list[str]:
    cls = model_cls
    for part in path:
        field = cls.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cls = ann
        else:
            return []
    return sorted(cls.model_fields)


def _one_line(err: ValidationError, cls: type[BaseModel] = Config) -> str:
    e = err.errors()[0]
    loc = tuple(p for p in e["loc"] if not isinstance(p, int) or True)
    key = ".".join(str(p) for p in loc) or "config"
    if e["type"] == "extra_forbidden":
        allowed = _allowed_keys(cls, loc[:-1])
        return f"unknown config key '{key}' (allowed: {', '.join(allowed)})"
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if e["type"] == "literal_error":
        ctx = e.get("ctx", {}).get("expected", "")
        msg = f"must be one of {ctx}"
    got = e.get("input")
    if e["type"] not in ("missing",) and not isinstance(got, dict) and got is not None:
        msg += f" (got {got!r})"
    return f"config key '{key}': {msg}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``training.epochs=3`` -> (['training', 'epochs'], 3). Values are YAML scalars or lists."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. training.epochs=3")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"override '{text}': bad key '{key}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{text}': '{p}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def validate_config(data: dict) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of sections (model, dataset, training, ...)")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, not a {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when path is None), apply overrides, validate once."""
    data = read_yaml(path) if path is not None else {}
    return validate_config(apply_overrides(data, list(overrides or [])))


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
