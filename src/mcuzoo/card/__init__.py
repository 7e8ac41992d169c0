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

One module per card section, in the card's order: :mod:`.header` (title, warning, description),
:mod:`.network` (network information, inputs / outputs), :mod:`.platforms`, :mod:`.footprint`
(metrics, memory, latency), :mod:`.accuracy` (accuracy, confusion matrices), :mod:`.training`,
:mod:`.reproduce` (how to reproduce, references). Each section is a function of the run's
:class:`~.context.Context`; :mod:`.text` holds the formatting helpers. What a card says about a model
comes from the model registry (``register_model(..., card=ModelCard(...))``), about a dataset from the
dataset-layout registry (:mod:`mcuzoo.layouts`).
"""
from __future__ import annotations

from pathlib import Path

from .. import rundir
from ..errors import RunDirError
from . import accuracy, footprint, header, network, platforms, reproduce, training
from .context import Context, _read_config, _read_optional_json
from .context import keras_counts, tflite_io  # noqa: F401 - importable from mcuzoo.card as before the split
from .header import USEFUL_CHANCE_CORRECTED  # noqa: F401
from .text import NOT_MEASURED  # noqa: F401

__all__ = ["write_card", "render_card", "register_cli", "CARD_NAME"]

CARD_NAME = "MODEL_CARD.md"


def write_card(run_dir: str | Path, *, plots: bool = True) -> Path:
    """Write ``MODEL_CARD.md`` into ``run_dir`` (after the plots, unless ``plots=False``); return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    if not (run_dir / rundir.METRICS).is_file():
        raise RunDirError(f"{run_dir} has no {rundir.METRICS}: run the evaluate stage first (mcuzoo run CONFIG)")
    if plots:
        from ..plots import write_plots

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
    try:
        ctx = Context(run_dir, metrics, cfg, info, analysis, analysis_problem)
        parts = [
            header.header(ctx), header.description(ctx), network.network_information(ctx), network.inputs_outputs(ctx),
            platforms.platforms(ctx), "# Performances", footprint.metrics_intro(ctx), footprint.memory(ctx),
            footprint.latency(ctx), accuracy.accuracy(ctx), accuracy.confusion(ctx), training.training(ctx),
            reproduce.reproduce(ctx), reproduce.references(ctx),
        ]
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, OverflowError, ZeroDivisionError):
        # a figure of the wrong type or shape (a hand-edited or damaged file): one line, no half card
        raise RunDirError(f"cannot write the card of {run_dir}: {rundir.METRICS}, {rundir.MODEL_INFO} or "
                          f"{rundir.ANALYSIS} there holds a value of the wrong type or shape") from None
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


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
        for folder in (run_dir, run_dir / "checkpoints"):  # what a killed writer left behind
            rundir.remove_temp_files(folder)
        path = write_card(run_dir, plots=args.plots)
    print(path)
    return 0
