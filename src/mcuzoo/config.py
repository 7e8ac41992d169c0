"""The one config schema of mcuzoo, validated once.

A config is a YAML file (data only: it is read with a ``yaml.SafeLoader`` that also
refuses duplicate keys, and never evaluated) plus ``key=value`` overrides from the command line, such as
``training.epochs=3``. Every section forbids unknown keys, so a typo is an error
that names the key and lists what is allowed, never a silently ignored setting.
"""
from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, first_line
from .layouts import LAYOUT_NAMES, LAYOUTS

STAGES = ("train", "quantize", "evaluate", "analyze", "export", "card")
if TYPE_CHECKING:
    DatasetName = str
else:
    DatasetName = Literal[LAYOUT_NAMES]  # one value per registered layout


def _and(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


SEED_MAX = 2**32 - 1  # numpy and TensorFlow take seeds in [0, 2^32)


class _Section(BaseModel):
    # allow_inf_nan=False: every float of every section is finite (.nan, .inf and 1e999 are refused)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(_Section):
    name: str = Field("st_mnist_v1", description="a model of the registry (mcuzoo models)")
    input_shape: tuple[int, int, int] = Field((28, 28, 1), description="height, width, channels")
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0, description="top dropout; None: the model's default")
    batch_norm_momentum: Optional[float] = Field(None, ge=0.0, lt=1.0,
        description="momentum of every BatchNormalization's moving averages; None: Keras' 0.99. Lower "
                    "(0.9) follows fast-moving weights, so that validation (moving averages) matches training")

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
    name: DatasetName = Field("glyphs36",
        description="built-in (" + ", ".join(n for n, lay in LAYOUTS.items() if lay.builtin)
                    + ") or a loader for files at dataset.path (a layout of mcuzoo.layouts)")
    path: Optional[str] = Field(None, description="dataset root for " + _and(
        [n for n, lay in LAYOUTS.items() if lay.needs_path]))
    test_path: Optional[str] = Field(None, description="separate class-per-folder test set (folder datasets)")
    val_path: Optional[str] = Field(None, description="separate class-per-folder validation set (folder datasets)")
    validation_split: float = Field(0.1, gt=0.0, lt=0.9,
        description="share of the training images held out for validation when the dataset has none")
    test_split: float = Field(0.0, ge=0.0, lt=0.9,
        description="hold out a test split from train when the dataset has none")
    samples_per_class: int = Field(300, ge=1, le=100_000, description="built-in datasets: training images per class")
    max_per_class: Optional[int] = Field(None, ge=1, le=10_000_000, description="cap images per class (quick runs)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of the stratified splits")
    skip_bad_files: bool = Field(False, description="skip unreadable images (listed in the run) instead of failing")

    @model_validator(mode="after")
    def _needs_path(self):
        if LAYOUTS[self.name].needs_path and not self.path:
            raise ValueError(f"dataset '{self.name}' needs dataset.path")
        if self.validation_split + self.test_split >= 0.95:
            raise ValueError("validation_split + test_split leave no training data")
        return self


class PreprocessingConfig(_Section):
    rescale: float = Field(1 / 127.5, gt=0.0, le=1e6, description="float input = pixel * rescale + offset")
    offset: float = Field(-1.0, ge=-1e6, le=1e6, description="added after rescale")
    interpolation: Literal["bilinear", "nearest", "bicubic", "area"] = Field("bilinear",
        description="resize method to the model's input size")
    aspect: Literal["fit", "crop", "pad", "emnist"] = Field("fit",
        description="fit: stretch; crop: center crop; pad: letterbox; emnist: frame a glyph as NIST's EMNIST "
                    "(ink bounding box, centred square, 2-pixel border)")


class ReduceLRConfig(_Section):
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="multiply the learning rate by this on a plateau")
    patience: int = Field(40, ge=1, le=1_000_000, description="epochs without a better val_accuracy before the rate is cut")
    min_lr: float = Field(1e-5, ge=0.0, le=10.0, description="the rate is never cut below this")


class ScheduleConfig(_Section):
    """The learning rate per epoch. ``plateau``: ReduceLROnPlateau (``training.reduce_lr``), as on the cards.
    ``cosine``: linear warm-up over ``warmup_epochs``, then a half cosine from ``learning_rate`` down to
    ``min_lr`` at the last epoch; it is a function of the epoch alone, so a resumed run follows it exactly."""

    name: Literal["plateau", "cosine"] = Field("plateau",
        description="plateau: training.reduce_lr; cosine: warm-up, then a half cosine")
    warmup_epochs: int = Field(0, ge=0, le=100_000, description="cosine: epochs of linear warm-up")
    min_lr: float = Field(0.0, ge=0.0, le=10.0, description="cosine: learning rate at the last epoch")


class EarlyStoppingConfig(_Section):
    patience: int = Field(60, ge=1, le=1_000_000, description="stop after this many epochs without a better val_accuracy")


class ClusterConfig(_Section):
    """Workers of a multi_worker run (used when the TF_CONFIG variable is not set)."""

    workers: list[str] = Field(..., min_length=1, max_length=10_000, description="host:port of every worker, chief first")
    task_index: int = Field(0, ge=0, le=9_999, description="this process's index in workers")

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
    epochs: int = Field(20, ge=1, le=100_000, description="at most this many epochs")
    recipe_epochs: Optional[int] = Field(None, ge=1, le=100_000,
        description="the schedule of the recipe this run follows, where epochs cuts it to fit the machine "
                    "(the card says so)")
    batch_size: int = Field(64, ge=1, le=65_536, description="images per step (per replica)")
    optimizer: Literal["adam", "sgd", "rmsprop"] = Field("adam", description="sgd has momentum 0.9")
    learning_rate: float = Field(0.01, gt=0.0, le=10.0, description="initial (plateau) or peak (cosine) learning rate")
    lr_schedule: ScheduleConfig = ScheduleConfig()
    reduce_lr: ReduceLRConfig = Field(ReduceLRConfig(), description="used by lr_schedule plateau only")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of weights, shuffling, dropout and augmentation")
    verbose: bool = Field(True, description="print a line (and progress bars) per epoch")
    deterministic: bool = Field(True, description="deterministic TensorFlow ops (exact resume; slower on GPUs)")
    distribution: Literal["none", "mirrored", "multi_worker"] = Field("none",
        description="TensorFlow distribution strategy")
    cpu_devices: Optional[int] = Field(None, ge=1, le=64,
        description="split the CPU into N logical devices (mirrored without GPUs)")
    cluster: Optional[ClusterConfig] = None
    scale_learning_rate: bool = Field(True, description="multiply learning_rate by the number of replicas")
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = Field("none",
        description="Keras dtype policy for training; the saved model is float32")
    initial_weights: Optional[str] = Field(
        None, description="start from this .keras model's weights (same model, input and classes; e.g. a zoo model "
                          "to train further) instead of a random initialisation; a fresh optimizer")

    @model_validator(mode="after")
    def _schedule(self):
        if self.recipe_epochs is not None and self.recipe_epochs < self.epochs:
            raise ValueError(f"recipe_epochs ({self.recipe_epochs}) is the recipe's schedule, which epochs "
                             f"({self.epochs}) cuts: it cannot be shorter")
        sch = self.lr_schedule
        if sch.name == "cosine":
            if sch.warmup_epochs >= self.epochs:
                raise ValueError(f"lr_schedule.warmup_epochs ({sch.warmup_epochs}) must be less than epochs ({self.epochs})")
            if sch.min_lr > self.learning_rate:
                raise ValueError(f"lr_schedule.min_lr ({sch.min_lr}) is above learning_rate ({self.learning_rate})")
        return self


class QuantizationConfig(_Section):
    per_channel: bool = Field(True, description="per-channel weight scales (false: per-tensor)")
    calibration_samples: int = Field(200, ge=1, le=100_000,
        description="training images that calibrate the activation ranges")
    qat_epochs: int = Field(0, ge=0, le=1000, description="quantization-aware fine-tuning epochs before int8 (0 = off)")
    qat_learning_rate: float = Field(1e-4, gt=0.0, le=1.0,
        description="learning rate of the quantization-aware fine-tuning")
    onnx: bool = Field(False, description="also export an ONNX QDQ int8 model (model_qdq_int8.onnx)")
    calibration_method: Literal["minmax", "percentile", "entropy"] = Field(
        "minmax", description="how the ONNX QDQ activation ranges are calibrated")
    onnx_opset: int = Field(17, ge=17, le=21, description="opset of the ONNX models")
    onnx_activation_type: Literal["int8", "uint8"] = Field("int8",
        description="QDQ activations (the model's input and output stay float)")
    mixed: bool = Field(False, description="search a mixed int4/int8-weight ONNX model")
    mixed_tolerance: float = Field(0.015, ge=0.0, lt=1.0,
        description="accuracy the mixed model may lose vs all-int8 (0.015 = 1.5 points)")
    mixed_confidence: float = Field(0.9, ge=0.5, lt=1.0,
        description="confidence that the mixed model's loss vs all-int8 is within mixed_tolerance (paired, on validation; 0.5 = plain comparison)")
    mixed_max_evals: int = Field(12, ge=2, le=1000, description="candidate models the mixed search may score")
    mixed_rank: Literal["sensitivity", "noise", "size"] = Field("sensitivity",
        description="order in which weight tensors are raised to int8")
    report: bool = Field(False, description="per-layer float vs int8 error report (quant_report.json / .png)")
    report_images: int = Field(32, ge=1, le=10_000, description="calibration images the per-layer report runs")


class EvaluationConfig(_Section):
    batch_size: int = Field(256, ge=1, le=65_536, description="images per inference batch")
    emnist_framing: bool = Field(False, description="also score the split with its glyphs framed as NIST's "
                                 "EMNIST (preprocessing.aspect=emnist), so the card gives top-1 in both framings")
    runtime: Literal["exact", "xnnpack"] = Field(
        "exact", description="kernels that run the int8 .tflite: exact (TFLM's reference kernels, bit-identical to "
        "the MCU) or xnnpack (fast, not MCU-exact; its figures are labelled so)")
    workers: int = Field(0, ge=0, le=64, description="processes for the exact .tflite path (0: half the cores, "
                         "at most 8)")


class AnalysisConfig(_Section):
    runtime: Literal["tflm", "cards"] = Field("tflm",
        description="what the board fits count: tflm (TensorFlow Lite Micro's whole tensor arena, "
                    "tflm_arena_bytes, in one RAM region) or cards (the cards' convention: activations with "
                    "input and output in one region, the runtime's RAM apart)")
    board_file: Optional[str] = Field(None,
        description="a YAML file describing your own board (core, mhz, flash, ram regions): it joins the board "
                    "fits and is the analysis target")


class ExportConfig(_Section):
    offline_plan: bool = Field(False,
        description="export stage: where mcuzoo's memory plan needs fewer bytes than TFLM's greedy plan, write it "
                    "into the exported model as TFLM's OfflineMemoryAllocation (as mcuzoo export --offline-plan)")


class _Augmentation(_Section):
    rate: float = Field(0.0, ge=0.0, le=1.0, description="probability that a training image gets it (0: off)")


FillMode = Literal["constant", "nearest", "reflect", "wrap"]


class _Geometric(_Augmentation):
    fill_mode: Optional[FillMode] = Field(None,
        description="pixels it uncovers: constant (zeros), nearest, reflect, wrap (unset: augmentation.fill_mode)")


def _ordered(section, lo: str, hi: str):
    if getattr(section, lo) > getattr(section, hi):
        raise ValueError(f"{lo} must not exceed {hi}")
    return section


class FlipAugmentation(_Augmentation):
    horizontal: bool = Field(True, description="mirror left-right")
    vertical: bool = Field(False, description="mirror top-bottom")


class RotationAugmentation(_Geometric):
    max_degrees: float = Field(15.0, gt=0.0, le=180.0,
        description="up to this many degrees either way (a Keras/ST factor f, a fraction of a full turn, is f * 360)")


class TranslationAugmentation(_Geometric):
    max_fraction: float = Field(0.1, gt=0.0, le=0.5, description="of the width (and of the height unless max_fraction_y is set)")
    max_fraction_y: Optional[float] = Field(None, gt=0.0, le=0.5, description="of the height, when it differs")


class ZoomAugmentation(_Geometric):
    min_scale: float = Field(0.9, gt=0.0, le=10.0, description="< 1 zooms out, > 1 zooms in")
    max_scale: float = Field(1.1, gt=0.0, le=10.0, description="upper end of the scale")

    @model_validator(mode="after")
    def _range(self):
        return _ordered(self, "min_scale", "max_scale")


class ShearAugmentation(_Geometric):
    max_degrees: float = Field(10.0, gt=0.0, le=60.0, description="up to this many degrees either way")


class ContrastAugmentation(_Augmentation):
    min_factor: float = Field(0.7, ge=0.0, le=10.0, description="lower end of the contrast factor")
    max_factor: float = Field(1.3, ge=0.0, le=10.0, description="upper end of the contrast factor")

    @model_validator(mode="after")
    def _range(self):
        return _ordered(self, "min_factor", "max_factor")


class BrightnessAugmentation(_Augmentation):
    max_delta: float = Field(0.15, gt=0.0, le=1.0, description="fraction of full scale added or taken away")


class GammaAugmentation(_Augmentation):
    min_gamma: float = Field(0.75, gt=0.0, le=10.0, description="lower end of the gamma")
    max_gamma: float = Field(1.33, gt=0.0, le=10.0, description="upper end of the gamma")

    @model_validator(mode="after")
    def _range(self):
        return _ordered(self, "min_gamma", "max_gamma")


class HueAugmentation(_Augmentation):
    max_delta: float = Field(0.05, gt=0.0, le=0.5, description="fraction of the colour circle (RGB only)")


class SaturationAugmentation(_Augmentation):
    min_factor: float = Field(0.7, ge=0.0, le=10.0, description="RGB only")
    max_factor: float = Field(1.3, ge=0.0, le=10.0, description="upper end of the saturation factor")

    @model_validator(mode="after")
    def _range(self):
        return _ordered(self, "min_factor", "max_factor")


class NoiseAugmentation(_Augmentation):
    min_stddev: float = Field(0.0, ge=0.0, le=128.0, description="gaussian noise, in pixel levels (0-255), at least")
    max_stddev: float = Field(8.0, gt=0.0, le=128.0, description="gaussian noise, in pixel levels (0-255)")

    @model_validator(mode="after")
    def _range(self):
        return _ordered(self, "min_stddev", "max_stddev")


class GrayscaleAugmentation(_Augmentation):
    """Replace an RGB image by its luma (ITU-R 601) in all three channels; grayscale images are left alone."""


class BlurAugmentation(_Augmentation):
    max_sigma: float = Field(1.0, gt=0.0, le=5.0, description="gaussian blur, in pixels")


class ErasingAugmentation(_Augmentation):
    min_area: float = Field(0.02, gt=0.0, le=1.0, description="fraction of the image")
    max_area: float = Field(0.2, gt=0.0, le=1.0, description="fraction of the image, at most")
    max_aspect: float = Field(3.0, ge=1.0, le=10.0,
        description="aspect ratio of the erased box, at most (and 1/this at least)")
    max_count: int = Field(1, ge=1, le=64,
        description="rectangles per chosen image: 1 to this many, uniformly (each with its own size and place)")
    fill: Literal["noise", "zero", "colour"] = Field("noise",
        description="what fills an erased box: noise per pixel, zeros, or one random colour per box")

    @model_validator(mode="after")
    def _range(self):
        return _ordered(self, "min_area", "max_area")


class AugmentationConfig(_Section):
    """Training-only augmentation; each kind applies to an image with its own probability ``rate``."""

    flip: FlipAugmentation = FlipAugmentation()
    rotation: RotationAugmentation = RotationAugmentation()
    translation: TranslationAugmentation = TranslationAugmentation()
    zoom: ZoomAugmentation = ZoomAugmentation()
    shear: ShearAugmentation = ShearAugmentation()
    contrast: ContrastAugmentation = ContrastAugmentation()
    brightness: BrightnessAugmentation = BrightnessAugmentation()
    gamma: GammaAugmentation = GammaAugmentation()
    hue: HueAugmentation = HueAugmentation()
    saturation: SaturationAugmentation = SaturationAugmentation()
    noise: NoiseAugmentation = NoiseAugmentation()
    grayscale: GrayscaleAugmentation = GrayscaleAugmentation()
    blur: BlurAugmentation = BlurAugmentation()
    erasing: ErasingAugmentation = ErasingAugmentation()
    fill_mode: FillMode = Field(
        "constant", description="pixels uncovered by rotation, translation, zoom, shear (constant: zeros)")


class Config(_Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$", description="run name: the run directory is output_dir/name")
    output_dir: str = Field("runs", description="folder that holds the run directories")
    stages: list[Literal["train", "quantize", "evaluate", "analyze", "export", "card"]] = Field(["train", "quantize", "evaluate"],
        description="stages to run, in pipeline order")
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig = DatasetConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    training: TrainingConfig = TrainingConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    export: ExportConfig = ExportConfig()
    augmentation: AugmentationConfig = AugmentationConfig()

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


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives one key twice: YAML would keep the last copy and lose the first silently."""

    def __init__(self, key: Any, first: Any, again: Any):
        self.key, self.first_line, self.line = key, first.line + 1, again.line + 1
        super().__init__(None, None, f"key {_short(key, 60)} is given twice (lines {self.first_line} and {self.line})",
                         again)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (data only, no Python tags) that refuses a key given twice in one mapping, at any depth.
    Merge keys (``<<: *base``) still work: a key that overrides a merged one is not a duplicate."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a collection as a key: the base class says it is unhashable
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, seen[key], key_node.start_mark)
                    seen[key] = key_node.start_mark
                except TypeError:
                    continue
        return super().construct_mapping(node, deep)


def yaml_load(text: str) -> Any:
    """The one YAML reader of mcuzoo: data only (safe), duplicate keys refused."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _section_of(ann) -> type[BaseModel] | None:
    """The section class behind a field's annotation (``X`` or ``Optional[X]``), else None."""
    for a in (ann, *typing.get_args(ann)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _allowed_keys(model_cls: type[BaseModel], path: tuple) -> list[str]:
    cls = model_cls
    for part in path:
        field = cls.model_fields.get(str(part))
        if field is None:
            return []
        sub = _section_of(field.annotation)  # also an optional section, e.g. training.cluster
        if sub is None:
            return []
        cls = sub
    return sorted(cls.model_fields)


def _short(value: Any, limit: int = 120) -> str:
    """A bounded repr: a value from YAML may be huge or self-referencing (aliases), never repr it whole."""
    import reprlib

    r = reprlib.Repr()  # (keyword arguments only from Python 3.12)
    r.maxlevel, r.maxtuple, r.maxlist, r.maxdict, r.maxset = 3, 6, 6, 6, 6
    r.maxstring = r.maxother = limit
    text = r.repr(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(err: ValidationError, cls: type[BaseModel] = Config) -> str:
    e = err.errors()[0]
    loc = tuple(p for p in e["loc"] if not isinstance(p, int) or True)
    key = ".".join(str(p) for p in loc) or "config"
    if len(key) > 200:
        key = key[:197] + "..."
    if e["type"] == "extra_forbidden":
        allowed = _allowed_keys(cls, loc[:-1])
        return f"unknown config key '{key}' (allowed: {', '.join(allowed)})"
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if e["type"] == "model_type":  # a section given as a plain value
        allowed = _allowed_keys(cls, loc)
        msg = f"must be a mapping of {', '.join(allowed)}" if allowed else "must be a mapping"
    if e["type"] == "literal_error":
        ctx = e.get("ctx", {}).get("expected", "")
        msg = f"must be one of {ctx}"
    got = e.get("input")
    if e["type"] not in ("missing",) and not isinstance(got, dict) and got is not None:
        msg += f" (got {_short(got)})"
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
        value = yaml_load(raw) if raw.strip() else None
    except DuplicateKeyError as e:
        raise ConfigError(f"override '{key[:80]}': {e.problem}") from None
    except yaml.YAMLError:
        value = raw
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. a 5000-digit int, month 13, [[[[...
        why = first_line(e, 120)
        if isinstance(e, RecursionError):
            why = "nested too deeply"
        raise ConfigError(f"override '{key[:80]}': value cannot be read ({why})") from None
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
        data = yaml_load(p.read_text(encoding="utf-8"))
    except DuplicateKeyError as e:
        raise ConfigError(f"config file {p}: {e.problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or type(e).__name__}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}") from None
    except RecursionError:
        raise ConfigError(f"config file {p} is not a usable config: nested too deeply") from None
    except (ValueError, OverflowError) as e:  # a scalar YAML accepts but Python cannot build: 5000-digit int, month 13
        why = first_line(e, 120)
        raise ConfigError(f"config file {p} holds a value that cannot be read ({why})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, not a {type(data).__name__}")
    return data


#: The config keys that name files or folders to read. A relative one resolves against the folder of the config
#: file that holds it, one given on the command line against the current directory; the loaded Config holds
#: them absolute. (``output_dir``, where results are written, stays relative to the current directory.)
PATH_KEYS = (("dataset", "path"), ("dataset", "test_path"), ("dataset", "val_path"), ("training", "initial_weights"))


def _resolve_paths(data: dict, base: Path, legacy: bool = False) -> None:
    """Make the relative :data:`PATH_KEYS` of ``data`` absolute against ``base``, in place.

    ``legacy``: a path that does not exist against ``base`` but does against the current directory (a config
    written when paths were taken from there, e.g. a run directory of an earlier version) resolves there.
    """
    import os

    for section, key in PATH_KEYS:
        node = data.get(section) if isinstance(data, dict) else None
        if not isinstance(node, dict):
            continue
        value = node.get(key)
        if not isinstance(value, str) or not value or "\0" in value:
            continue
        given = os.path.expanduser(value)
        if os.path.isabs(given):
            node[key] = os.path.normpath(given)
            continue
        there = os.path.normpath(os.path.join(base, given))
        if legacy and not os.path.exists(there) and os.path.exists(given):
            there = os.path.abspath(given)
        node[key] = there


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when path is None), apply overrides, validate once.

    Relative paths (:data:`PATH_KEYS`) in the file resolve against the file's folder, those in ``overrides``
    against the current directory: the Config holds absolute paths, so errors name the path tried.
    """
    data = read_yaml(path) if path is not None else {}
    try:
        if path is not None:
            _resolve_paths(data, Path(path).expanduser().absolute().parent, legacy=True)
        data = apply_overrides(data, list(overrides or []))
        _resolve_paths(data, Path.cwd())
        return validate_config(data)
    except RecursionError:
        raise ConfigError("config is nested too deeply") from None


def config_to_yaml(cfg: Config, relative_to: str | Path | None = None) -> str:
    """The config as YAML; with ``relative_to`` (the folder the file will be in), paths are written relative to
    it, so that the file keeps working wherever that folder and the data move together (the zoo), and an
    absolute ``output_dir`` (a folder of the machine that wrote it) becomes the default one."""
    data = cfg.model_dump(mode="json")
    if relative_to is not None:
        import os

        for section, key in PATH_KEYS:
            value = data.get(section, {}).get(key)
            if isinstance(value, str) and os.path.isabs(value):
                data[section][key] = os.path.relpath(value, os.path.abspath(relative_to))
        if os.path.isabs(data["output_dir"]):
            data["output_dir"] = Config.model_fields["output_dir"].default
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------------------
# bounds of the numbers the CLI options take: in one place, beside the config's own


#: option dest -> the config key whose type and limits it shares
CLI_OPTION_KEYS = {
    "batch_size": "evaluation.batch_size", "rescale": "preprocessing.rescale", "offset": "preprocessing.offset",
    "calibration_samples": "quantization.calibration_samples", "tolerance": "quantization.mixed_tolerance",
    "confidence": "quantization.mixed_confidence", "max_evals": "quantization.mixed_max_evals",
    "report_images": "quantization.report_images", "seed": "training.seed", "input_shape": "model.input_shape",
    "workers": "evaluation.workers",
}
#: option dest -> (lowest, highest) for the options that have no config key
CLI_OPTION_LIMITS = {"classes": (2, 10_000), "top_k": (1, 100_000), "top": (1, 100_000), "n": (1, 1024)}


def _field(key: str):
    cls: type[BaseModel] = Config
    *sections, leaf = key.split(".")
    for part in sections:
        cls = _section_of(cls.model_fields[part].annotation)  # type: ignore[assignment]
    return cls, leaf


def check_cli_numbers(values: dict) -> None:
    """Refuse a CLI option's number outside its bounds (``--batch-size 0``, ``--classes 1000000000``,
    ``--rescale nan``) with one ConfigError naming the option; None means "not given"."""
    for dest, value in values.items():
        if value is None:
            continue
        option = "--" + dest.replace("_", "-")
        if dest in CLI_OPTION_LIMITS:
            lo, hi = CLI_OPTION_LIMITS[dest]
            if not lo <= value <= hi:
                raise ConfigError(f"{option} must be between {lo:,} and {hi:,} (got {_short(value)})")
        elif dest in CLI_OPTION_KEYS:
            cls, leaf = _field(CLI_OPTION_KEYS[dest])
            try:
                cls.__pydantic_validator__.validate_assignment(cls.model_construct(), leaf, value)
            except ValidationError as err:
                e = err.errors()[0]
                msg = e["msg"][len("Value error, "):] if e["msg"].startswith("Value error, ") else e["msg"]
                raise ConfigError(f"{option}: {msg} (got {_short(value)})") from None


def cli_limits(dest: str) -> str:
    """The documented bounds of an option, as ``mcuzoo config --keys`` shows a key's (for --help texts)."""
    if dest in CLI_OPTION_LIMITS:
        lo, hi = CLI_OPTION_LIMITS[dest]
        return f">= {lo}, <= {hi}"
    cls, leaf = _field(CLI_OPTION_KEYS[dest])
    return _limits(cls.model_fields[leaf])


@dataclass(frozen=True)
class KeyInfo:
    """One leaf key of the schema, as ``mcuzoo config --keys`` lists it."""

    key: str
    type: str
    default: Any
    description: str
    limits: str = ""


_LIMIT_OPS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "at least"),
              ("max_length", "at most"))


def _limits(field) -> str:
    """The field's numeric bounds (``>= 1, <= 100000``) from its pydantic metadata."""
    parts = []
    for m in field.metadata:
        for attr, sign in _LIMIT_OPS:
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sign} {v:g}" if isinstance(v, float) else f"{sign} {v}")
        if getattr(m, "pattern", None):
            parts.append(f"matches {m.pattern}")
    return ", ".join(parts)


def _type_name(ann) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " | ".join(names) + (" | null" if type(None) in args else "")
    if origin in (list, tuple):
        inner = {_type_name(a) for a in args if a is not Ellipsis}
        return f"list of {' | '.join(sorted(inner))}" if inner else "list"
    return getattr(ann, "__name__", str(ann))


def describe_keys(cls: type[BaseModel] = Config, prefix: str = "") -> list[KeyInfo]:
    """Every leaf key of the schema in order, with its type, default and description
    (the section's docstring stands for an optional section with no default, e.g. ``training.cluster``)."""
    out: list[KeyInfo] = []
    for name, field in cls.model_fields.items():
        key = f"{prefix}{name}"
        sub = _section_of(field.annotation)
        if sub is not None and field.default is not None:
            out.extend(describe_keys(sub, key + "."))
            continue
        default = field.default
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        elif isinstance(default, tuple):
            default = list(default)
        desc = field.description or ""
        if sub is not None and not desc:
            desc = ((sub.__doc__ or "").strip().splitlines() or [""])[0]
        out.append(KeyInfo(key, _type_name(field.annotation) if sub is None else "mapping | null", default, desc,
                           _limits(field)))
    return out
