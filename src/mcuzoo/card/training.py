"""Training settings: optimizer, schedule, callbacks, augmentation, preprocessing, split and time."""
from __future__ import annotations

from .. import rundir
from .context import Context
from .text import NOT_MEASURED, _affine, _code, _get, _int, _pct, _table


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


def training(ctx: Context) -> str:
    """The card's Training table: one row per setting, in the order of the reference cards."""
    head = "## Training"
    t = _get(ctx.cfg, "training") or {}
    tm = ctx.m.get("training") or {}
    if not t and not tm:
        return f"{head}\n\nTraining settings: {NOT_MEASURED} (no `{rundir.CONFIG}` and no training figures)."
    rows = []
    if t:
        rows += _optimizer_rows(t)
    if t.get("initial_weights"):
        rows.append(["Initial weights", f"{_code(t['initial_weights'])} (training continued from that model with a "
                                        "fresh optimizer; epochs below count this run only)"])
    rows += _epoch_rows(t, tm)
    if t:
        rows += _recipe_rows(ctx, t, tm)
    pre = _get(ctx.cfg, "preprocessing") or {}
    if pre:
        rows.append(["Preprocessing", f"float input = {_affine(pre.get('rescale', 1.0), pre.get('offset', 0.0))}, "
                                      f"{pre.get('interpolation', 'bilinear')} resize"])
    d = _get(ctx.cfg, "dataset") or {}
    if d:
        rows.append(["Validation split", f"{float(d.get('validation_split', 0)) * 100:g} % of train, stratified, seed {d.get('seed')}"])
    rows.append(["Training time", f"{tm['seconds']:,} s" if tm.get("seconds") is not None else NOT_MEASURED])
    out = f"{head}\n\n" + _table(["Setting", "Value"], rows)
    from ..plots import TRAINING_CURVES_PNG

    if (ctx.run_dir / TRAINING_CURVES_PNG).is_file():
        out += f"\n\n![training curves: loss, accuracy and learning rate per epoch]({TRAINING_CURVES_PNG})"
    return out


def _optimizer_rows(t: dict) -> list[list[str]]:
    """Optimizer, learning rate (initial, or the cosine schedule's peak) and batch size."""
    lr = t.get("learning_rate")
    kind = "peak" if (t.get("lr_schedule") or {}).get("name") == "cosine" else "initial"
    return [
        ["Optimizer", str(t.get("optimizer", NOT_MEASURED))],
        ["Learning rate", f"{lr:g} ({kind})" if isinstance(lr, (int, float)) else NOT_MEASURED],
        ["Batch size", _int(t.get("batch_size"))],
    ]


def _epoch_rows(t: dict, tm: dict) -> list[list[str]]:
    """The epochs run (of at most how many, stopped early or not) and the best epoch, the one kept."""
    epochs = f"{tm['epochs_run']} run" if tm.get("epochs_run") is not None else NOT_MEASURED
    if t.get("epochs") is not None:
        epochs += f" (at most {t['epochs']})"
    if tm.get("stopped_early"):
        epochs += ", stopped early"
    if t.get("recipe_epochs") is not None and t.get("epochs") is not None and t["recipe_epochs"] > t["epochs"]:
        epochs += (f"; **the recipe's schedule is {t['recipe_epochs']} epochs, cut to {t['epochs']} to fit the "
                   "machine** (`training.recipe_epochs`)")
    rows = [["Epochs", epochs]]
    if tm.get("best_epoch") is not None:
        best = f"{tm['best_epoch']}"
        if tm.get("best_val_accuracy") is not None:
            best += f" (validation accuracy {_pct(tm['best_val_accuracy'])} %)"
        rows.append(["Best epoch (kept)", best])
    return rows


def _callbacks_text(t: dict) -> str:
    """The schedule and callbacks as the reference cards name them (Keras callbacks)."""
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
    return ", ".join(cbs)


def _recipe_rows(ctx: Context, t: dict, tm: dict) -> list[list[str]]:
    """Callbacks, augmentation, seed, distribution and mixed precision."""
    rows = [["Callbacks", _callbacks_text(t)],
            ["Augmentation", _augmentation_text(t.get("augmentation", _get(ctx.cfg, "augmentation")))]]
    if t.get("seed") is not None:
        rows.append(["Seed", f"{t['seed']}" + (" (deterministic ops)" if t.get("deterministic") else "")])
    if t.get("distribution") not in (None, "none"):
        reps = f", {tm['replicas']} replicas" if tm.get("replicas") else ""
        rows.append(["Distribution", f"{t['distribution']}{reps}"])
    if t.get("mixed_precision") not in (None, "none"):
        rows.append(["Mixed precision", str(t["mixed_precision"])])
    return rows
