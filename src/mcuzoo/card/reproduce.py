"""How to reproduce the run, and the dataset's references."""
from __future__ import annotations

from .. import rundir
from ..layouts import DATASETS
from .context import Context
from .text import NOT_MEASURED, _code, _get


def reproduce(ctx: Context) -> str:
    if not (ctx.run_dir / rundir.CONFIG).is_file():
        return f"## How to reproduce\n\n{NOT_MEASURED}: this run has no `{rundir.CONFIG}`."
    out_dir = _get(ctx.cfg, "output_dir")
    name = _get(ctx.cfg, "name")
    where = f" into a new run directory under {_code(out_dir)} ({_code(f'{name}2')}, {_code(f'{name}3')}, ...)" if out_dir and name else ""
    path_note = ""
    if _get(ctx.cfg, "dataset", "path"):
        path_note = (f" The dataset is read from {_code(_get(ctx.cfg, 'dataset', 'path'))}: a relative path is taken "
                     f"from the folder of {_code(rundir.CONFIG)}.")
    stages = _get(ctx.cfg, "stages")
    what = ", ".join(stages) if isinstance(stages, list) and stages else "train, quantize, evaluate"
    return (
        "## How to reproduce\n\n"
        f"`{rundir.CONFIG}` beside this card is the run's resolved config (every default filled in). In this "
        "run directory:\n\n"
        "```bash\n"
        f"mcuzoo run {rundir.CONFIG}\n"
        "```\n\n"
        f"runs its stages again ({what}){where}.{path_note} A relative `output_dir` is taken from the folder "
        "the command runs in. Training is seeded; float results can still differ slightly across "
        "machines and TensorFlow versions." + _initial_weights_note(ctx) + _extras_note(ctx)
    )


def _initial_weights_note(ctx: Context) -> str:
    init = _get(ctx.cfg, "training", "initial_weights")
    if not init:
        return ""
    return (f" Training starts from the weights in {_code(init)} (`training.initial_weights`), the best model of an "
            "earlier run: make that run first (its config is that run's `config.yaml`), or point the key at "
            "another copy of its `float_model.keras`.")


def _extras_note(ctx: Context) -> str:
    """How the ONNX models and the per-layer report were made when the config's stages did not make them."""
    q = _get(ctx.cfg, "quantization") or {}
    flags = [flag for key, flag, made_by_run in (("onnx_qdq", "--onnx", q.get("onnx")),
                                                 ("mixed", "--mixed", q.get("mixed")),
                                                 ("quant_report", "--report", q.get("report")))
             if ctx.m.get(key) and not made_by_run]
    if not flags:
        return ""
    qdq = ctx.m.get("onnx_qdq") or ctx.m.get("mixed") or {}
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


def references(ctx: Context) -> str:
    refs = DATASETS[ctx.kind].references if ctx.kind in DATASETS else ()
    if not refs:
        what = DATASETS[ctx.kind].title if ctx.kind in DATASETS else _code(ctx.dataset)
        return f"# References\n\nNo external dataset reference: {what} is not a published dataset."
    body = "\n\n".join(f'<a id="{i}">[{i}]</a>\n{r}' for i, r in enumerate(refs, 1))
    return f"# References\n\n{body}"
