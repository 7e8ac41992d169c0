"""The ``mcuzoo`` command: ``mcuzoo VERB [ARGS] [key=value ...]``.

Verbs: ``run`` (the whole path from a config), ``config`` (a config as a run
would use it, or every key with its default), ``models`` (the registry with
parameters and MACs), ``evaluate`` (a model file on a dataset), and those that
the stage modules register. Every user error
ends as one line ``mcuzoo: error: ...`` on stderr and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NoReturn

from .console import console, error, quiet_tensorflow, stdout_gone
from .errors import ConfigError, McuzooError, first_line


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not H,W,C (e.g. 128,128,3)") from None
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not H,W,C (e.g. 128,128,3)")
    return parts


def cmd_run(args) -> int:
    from .config import load_config
    from .pipeline import run

    if args.resume:
        if args.args and not all("=" in a for a in args.args):
            raise ConfigError("with --resume, give only key=value overrides (the run's own config.yaml is used)")
        print(run(resume=args.resume, overrides=args.args))  # the result, on stdout: RUN=$(mcuzoo run ...)
        return 0
    if not args.args:
        raise ConfigError("mcuzoo run needs a config file, e.g. mcuzoo run configs/quickstart.yaml")
    cfg = load_config(args.args[0], args.args[1:])
    print(run(cfg))  # the run directory, on stdout (progress went to stderr)
    return 0


def key_matches(key: str, prefix: str) -> bool:
    """Whether config key ``key`` (``training.lr_schedule.name``) is one ``mcuzoo config --keys PREFIX`` lists:
    PREFIX's dotted segments are the key's first ones, the last of them a prefix of the key's segment there
    (``training``, ``training.lr``, ``training.lr_sch``, ``train``; empty: every key)."""
    want = prefix.strip().rstrip(".").split(".") if prefix.strip().rstrip(".") else []
    parts = key.split(".")
    if len(want) > len(parts):
        return False
    return all(p == w for p, w in zip(parts, want[:-1])) and (not want or parts[len(want) - 1].startswith(want[-1]))


def cmd_config(args) -> int:
    from .config import config_to_yaml, describe_keys, load_config
    from .console import print_out

    path, overrides = None, list(args.args)
    if overrides and "=" not in overrides[0]:
        path = overrides.pop(0)
    if any("=" not in o for o in overrides):
        raise ConfigError("give one config file, then key=value overrides")
    cfg = load_config(path, overrides)
    from .pipeline import check_config

    check_config(cfg)  # every check that needs no data, as `mcuzoo run` makes them
    if args.keys is not None:
        values = cfg.model_dump(mode="json")

        def value_of(key: str):
            v = values
            for part in key.split("."):
                v = v[part]
            return v

        rows = [k for k in describe_keys() if key_matches(k.key, args.keys)]
        if not rows:
            raise ConfigError(f"no config key starts with '{args.keys}' (sections: "
                              f"{', '.join(sorted({k.key.split('.')[0] for k in describe_keys()}))})")
        if args.json:
            print(json.dumps([{"key": k.key, "type": k.type, "default": k.default, "value": value_of(k.key),
                               "limits": k.limits, "description": k.description} for k in rows], indent=2))
            return 0
        from rich.table import Table

        given = bool(args.args)  # a config or overrides: show what they set beside the defaults
        table = Table(title=f"mcuzoo config keys{f' ({path})' if path else ''}", show_lines=False)
        table.add_column("key", no_wrap=True, style="bold")
        for col in ("type", "default", *(["value"] if given else []), "limits", "description"):
            table.add_column(col, overflow="fold")
        for k in rows:
            value = [json.dumps(value_of(k.key))] if given else []
            table.add_row(k.key, k.type, json.dumps(k.default), *value, k.limits, k.description)
        print_out(table)
        return 0
    print(config_to_yaml(cfg), end="")
    return 0


def cmd_models(args) -> int:
    from rich.table import Table

    from .console import print_out
    from .models import count_model, list_models

    table = Table(title=f"mcuzoo models ({args.classes} classes)")
    for col in ("model", "input", "parameters", "MACs", "description"):
        table.add_column(col, justify="right" if col in ("parameters", "MACs") else "left",
                         no_wrap=col != "description", overflow="fold")
    rows: list[dict] = []
    for spec in list_models():  # counted from each model's layer arithmetic: no Keras graph, no TensorFlow
        shape = tuple(args.input_shape) if args.input_shape else spec.default_input_shape
        try:
            params, macs = count_model(spec.name, shape, args.classes)
        except ConfigError as e:  # this shape is impossible for this model: say why in its row
            rows.append({"model": spec.name, "input_shape": list(shape), "error": str(e)})
            table.add_row(spec.name, "x".join(map(str, shape)), "-", "-", f"[red]{e}[/]")
            continue
        rows.append({"model": spec.name, "input_shape": list(shape), "params": params,
                     "macs": macs, "description": spec.description})
        table.add_row(spec.name, "x".join(map(str, shape)), f"{params:,}", f"{macs:,}", spec.description)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_out(table)
    return 0


def _evaluate_sources(args) -> tuple[str | None, str | None, list[str]]:
    """(data, run config to take the split from, overrides) of ``mcuzoo evaluate MODEL [DATA] [key=value ...]``."""
    from pathlib import Path

    from .evaluate import run_config_of

    data, overrides = args.data, list(args.overrides)
    if data is not None and "=" in data and not Path(data).exists():  # no DATA, only overrides
        data, overrides = None, [data, *overrides]
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"give one DATA, then key=value overrides (got {bad[0]!r})")
    if data is not None and data.endswith((".yaml", ".yml")):
        return data, data, overrides
    if data is not None and (Path(data) / "config.yaml").is_file() and (
            (Path(data) / "model_info.json").is_file() or (Path(data) / "metrics.json").is_file()):
        return data, str(Path(data) / "config.yaml"), overrides  # a run directory
    own = run_config_of(args.model)
    if data is None or args.split:
        if own is None:
            raise ConfigError(f"{args.model} is not in a run directory (no config.yaml beside it): give the data, "
                              "or a run's config.yaml or directory, to take the split from")
        if data is not None:  # the folder the run was trained from, wherever it is now
            overrides = [f"dataset.path={data}", *overrides]
        return data, str(own), overrides
    if overrides:
        raise ConfigError("key=value overrides apply to a run's config: give a config.yaml or run directory "
                          "(or --split) to use them")
    return data, None, []


def cmd_evaluate(args) -> int:
    from .models.runner import open_model
    from .models.scoring import evaluate_model
    from .rundir import read_model_info
    from .runtime import runtime_arg

    info = read_model_info(args.model)
    rescale = args.rescale if args.rescale is not None else (info.rescale if info else None)
    offset = args.offset if args.offset is not None else (info.offset if info else 0.0)
    data, run_config, overrides = _evaluate_sources(args)
    rt = runtime_arg(args)
    backend, shape, _ = open_model(args.model, rescale, offset, args.batch_size, rt, 1)
    overlap = None
    if run_config is not None:  # a run's config: the very split that run made (its test split by default)
        split, class_names, where, split_name = _run_split(args, run_config, overrides, shape, info)
    else:
        split, class_names, overlap = _folder_split(args, data, shape, info)
        where, split_name = str(data), None
    res = evaluate_model(args.model, split, class_names, rescale, offset, args.batch_size, rt, args.workers or None)
    if args.json:
        from .rundir import json_text

        print(json_text({"model": str(args.model), "data": str(data if data is not None else run_config),
                         "split": split_name, **res.summary(),
                         **({"overlap": overlap.to_json()} if overlap is not None else {})}))
        return 0
    _print_evaluation(args, res, where, class_names, overlap)
    return 0


def _run_split(args, run_config: str, overrides: list[str], shape, info):
    """(split, class names, where, split name) of ``mcuzoo evaluate``: the split a run's config makes."""
    from .config import load_config
    from .data import load_dataset

    cfg = load_config(run_config, overrides)
    dataset = load_dataset(cfg.dataset, shape, cfg.preprocessing.interpolation, aspect=cfg.preprocessing.aspect)
    want = args.split or ("test" if dataset.eval_split is dataset.test else "validation")
    split = {"test": dataset.test, "validation": dataset.val, "train": dataset.train}[want]
    if split is None or not len(split):
        raise McuzooError(f"the run's dataset has no {want} split (try --split validation)")
    class_names = dataset.class_names
    if info and list(info.class_names) != list(class_names):
        raise McuzooError(f"the model's {len(info.class_names)} classes are not those of {run_config}'s dataset "
                          f"({len(class_names)} classes)")
    where = f"the {want} split of {run_config}" + (f" ({cfg.dataset.path})" if cfg.dataset.path else "")
    return split, class_names, where, want


def _folder_split(args, data, shape, info):
    """(split, class names, overlap) of ``mcuzoo evaluate`` on a dataset: the overlap with the images the
    model's own run trained on (None when there is none or it cannot be told) is warned about here."""
    from .data import load_eval_split
    from .evaluate import data_overlap, run_config_of

    split, class_names = load_eval_split(
        str(data), shape, class_names=info.class_names if info else None,
        interpolation=info.interpolation if info else "bilinear", aspect=info.aspect if info else "fit",
    )
    overlap = None
    own = run_config_of(args.model)
    if own is not None:
        from .config import load_config

        try:
            overlap = data_overlap(load_config(own), own, str(data), split, class_names)
        except McuzooError:
            overlap = None
    if overlap is not None:
        console.print(f"[bold red]warning:[/] {escape_markup(overlap.warning())}")
    return split, class_names, overlap


def _print_evaluation(args, res, where: str, class_names, overlap) -> None:
    """The top-1 line and the per-class table of ``mcuzoo evaluate``."""
    from rich.table import Table

    from .console import print_out

    how = f"{res.backend}, {res.summary()['kernels_label']}" if res.kernels else res.backend
    seen = " [bold red](not a test score: see the warning)[/]" if overlap is not None else ""
    print_out(f"{escape_markup(str(args.model))} on {escape_markup(where)} ({res.n:,} images, {how}): "
              f"top-1 [bold]{100 * res.top1:.2f} %[/]{seen}")
    table = Table(title="per class", title_justify="left")
    for col in ("class", "images", "correct", "top-1"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(class_names):
        row = res.confusion[i]
        n = int(sum(row))
        table.add_row(escape_markup(str(name)), f"{n:,}", f"{int(row[i]):,}", f"{100 * row[i] / n:.2f} %" if n else "-")
    print_out(table)


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _refresh_card(run_dir: str) -> None:
    """After ``mcuzoo quantize``: a run that has a model card gets it rewritten, so that it names the new models
    (the card stage reads metrics.json, which quantize has just updated)."""
    from pathlib import Path

    from . import rundir
    from .card import CARD_NAME, write_card

    run_dir_p = Path(run_dir)
    if not (run_dir_p / CARD_NAME).is_file() or not (run_dir_p / rundir.METRICS).is_file():
        return
    with rundir.RunLock(run_dir_p):
        path = write_card(run_dir_p)
    console.print(f"model card refreshed: {path}")


class _Parser(argparse.ArgumentParser):
    """argparse with mcuzoo's one-line errors: ``mcuzoo: error: evaluate: argument --batch-size: invalid int
    value: 'x' (see mcuzoo evaluate --help)`` and exit status 2, instead of the usage block and the
    sub-command's own prefix. Sub-parsers are of this class too (argparse makes them of the parent's type)."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog[len("mcuzoo"):].strip()
        where = f"{verb}: " if verb else ""
        self.exit(2, f"mcuzoo: error: {where}{' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mcuzoo", description="Tiny image classifiers, from a dataset to an int8 model that fits a microcontroller.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"mcuzoo {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    _register_run(sub)
    _register_config(sub)
    _register_models(sub)
    _register_evaluate(sub)

    from .analysis import register_cli as analysis_cli
    from .card import register_cli as card_cli
    from .export import register_cli as export_cli
    from .predict import register_cli as predict_cli

    analysis_cli(sub)
    export_cli(sub)
    card_cli(sub)
    predict_cli(sub)
    from .data.cli import register_cli as data_cli
    from .quantization.cli import register_cli as quantize_cli
    from .zoo import register_cli as zoo_cli

    quantize_cli(sub)
    data_cli(sub)
    zoo_cli(sub)
    return p


def _register_run(sub) -> None:
    r = sub.add_parser("run", help="train, quantize and evaluate as a config says")
    r.add_argument("args", nargs="*", metavar="CONFIG [key=value ...]",
                   help="YAML config file, e.g. configs/quickstart.yaml, then overrides such as training.epochs=3")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    r.set_defaults(fn=cmd_run)


def _register_config(sub) -> None:
    c = sub.add_parser("config", help="print a config as a run would use it (validated, defaults filled in), "
                                      "or list every key with --keys")
    c.add_argument("args", nargs="*", metavar="[CONFIG] [key=value ...]",
                   help="YAML config file (default: the defaults), then overrides")
    c.add_argument("--keys", nargs="?", const="", default=None, metavar="PREFIX",
                   help="list the keys (those under PREFIX, e.g. training) with type, default, limits, description, "
                        "and the value a given config sets")
    c.add_argument("--json", action="store_true", help="with --keys: print JSON")
    c.set_defaults(fn=cmd_config)


def _register_models(sub) -> None:
    m = sub.add_parser("models", help="list the models with parameters and MACs")
    m.add_argument("--input-shape", type=_shape, default=None, metavar="H,W,C", help="input shape (default: each model's own)")
    m.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.set_defaults(fn=cmd_models)


def _register_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="top-1 and per-class accuracy of a .keras, .tflite or .onnx model on a dataset")
    e.add_argument("model", help="model file (.keras, .tflite, .onnx); class names come from model_info.json beside it")
    e.add_argument("data", nargs="?", default=None,
                   help="dataset folder (class folders, EMNIST IDX, Food-101), a built-in name (glyphs36, shapes), "
                   "or a run's config.yaml or run directory (its test split, or validation where it has none); "
                   "default: the run the model lies in")
    e.add_argument("overrides", nargs="*", metavar="key=value",
                   help="with a run's config: overrides, e.g. dataset.path=../shared/data/flowers")
    e.add_argument("--split", choices=("test", "validation", "train"), default=None,
                   help="score this split of the model's run (its config.yaml beside the model, or the one given); "
                        "with a dataset folder, the run's split of that folder")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--rescale", type=float, default=None, help="float input = pixel * rescale + offset (default: from model_info.json)")
    e.add_argument("--offset", type=float, default=None)
    from .runtime import add_runtime_args

    add_runtime_args(e)
    e.add_argument("--workers", type=int, default=0,
                   help="processes for the exact .tflite path (default 0: half the cores, at most 8)")
    e.set_defaults(fn=cmd_evaluate)


def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        from .config import check_cli_numbers

        check_cli_numbers(vars(args))
        rc = int(args.fn(args) or 0)
        if rc == 0 and args.verb == "quantize":
            _refresh_card(args.run_dir)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return rc
    except BrokenPipeError:  # `mcuzoo predict ... | head`: the reader has gone
        return stdout_gone()
    except McuzooError as e:
        error(f"mcuzoo: error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        error("mcuzoo: interrupted")
        return 130
    except MemoryError:
        error("mcuzoo: error: out of memory (try a smaller batch_size or input size)")
        return 1
    except Exception as e:  # an internal error: still one line unless asked for more
        if os.environ.get("MCUZOO_DEBUG"):
            raise
        msg = first_line(e, 300) if str(e).strip() else ""
        error(f"mcuzoo: internal error: {type(e).__name__}: {msg} (set MCUZOO_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
