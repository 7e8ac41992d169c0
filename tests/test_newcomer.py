"""A newcomer's first hour (issue 19): Unix-friendly output, the Python API equal to the CLI, config checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcuzoo.cli import key_matches, main

REPO = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    """The environment of a fresh shell: none of the TF settings the test process (conftest) made."""
    from mcuzoo.console import TF_ENV

    env = {k: v for k, v in os.environ.items() if k not in TF_ENV}
    env["PYTHONPATH"] = str(REPO / "src")
    env.update(extra)
    return env


# ----------------------------------------------------------------------------- config --keys prefixes


@pytest.mark.parametrize("prefix, key, hit", [
    ("", "training.lr_schedule.name", True),
    ("training", "training.lr_schedule.name", True),
    ("training.", "training.epochs", True),
    ("training.lr", "training.lr_schedule.name", True),
    ("training.lr", "training.learning_rate", False),
    ("training.lea", "training.learning_rate", True),
    ("train", "training.epochs", True),
    ("training.lr_schedule.min", "training.lr_schedule.min_lr", True),
    ("training.lr_schedule.min", "training.reduce_lr.min_lr", False),
    ("epochs", "training.epochs", False),
    ("training.epochs.x", "training.epochs", False),
])
def test_key_matches_by_segment_prefix(prefix, key, hit):
    assert key_matches(key, prefix) is hit


def test_config_keys_prefix_lists_lr_schedule_on_stdout(capsys):
    assert main(["config", "--keys", "training.lr"]) == 0
    out, err = capsys.readouterr()
    assert "training.lr_schedule.name" in out and "training.lr_schedule.warmup_epochs" in out
    assert "training.learning_rate" not in out and "training.epochs" not in out
    assert "training.lr_schedule" not in err  # the table is a result: stdout, not stderr


def test_config_keys_json_prefix(capsys):
    assert main(["config", "--keys", "training.lr", "--json"]) == 0
    keys = [r["key"] for r in json.loads(capsys.readouterr().out)]
    assert keys and all(k.startswith("training.lr_schedule.") for k in keys)


# ----------------------------------------------------------------------------- tables never cut numbers


def _table():
    from rich.table import Table

    t = Table(title="t")
    for col in ("model", "parameters", "MACs", "description"):
        t.add_column(col, justify="right" if col in ("parameters", "MACs") else "left")
    t.add_row("st_efficientnet_lc_v1", "12,345,678", "1,234,567,890", "a long description " * 8)
    t.add_row("st_mnist_v1", "10,372", "1,074,720", "short")
    return t


def test_tables_at_80_columns_keep_every_number():
    import io

    from rich.console import Console

    from mcuzoo.console import protect_numbers

    buf = io.StringIO()
    t = _table()
    protect_numbers(t)
    Console(file=buf, width=80, force_terminal=True, color_system=None).print(t)
    text = buf.getvalue()
    for number in ("12,345,678", "1,234,567,890", "10,372", "1,074,720", "st_efficientnet_lc_v1"):
        assert number in text
    assert "…" not in text


def test_piped_tables_are_not_wrapped(capsys, monkeypatch):
    from mcuzoo.console import print_out

    monkeypatch.setenv("COLUMNS", "40")
    print_out(_table())
    out = capsys.readouterr().out
    assert "…" not in out
    row = next(line for line in out.splitlines() if "st_efficientnet_lc_v1" in line)
    assert "12,345,678" in row and "1,234,567,890" in row and ("a long description " * 8).strip() in row


@pytest.mark.parametrize("columns", ["40", "200"])
def test_a_title_wider_than_its_table_stays_on_one_line(capsys, monkeypatch, columns):
    """e.g. `mcuzoo predict /long/path/model_int8.tflite ... | cat`: rich wraps a title to its table's width."""
    from rich.table import Table

    from mcuzoo.console import print_out

    monkeypatch.setenv("COLUMNS", columns)
    title = "/a/long/path/to/zoo/squeezenet_v1_0/flowers_128/model_int8.tflite (litert, MCU-exact)"
    t = Table(title=title, title_justify="left")
    t.add_column("#")
    t.add_row("1")
    short = Table(title="boards")
    short.add_column("a column wider than its title")
    print_out(t, short)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].rstrip() == title
    assert lines[1].startswith("┏━━━┓")
    assert sum("boards" in line for line in lines) == 1 and "boards" not in lines[0]


def test_models_table_at_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models", "--classes", "101"]) == 0
    out = capsys.readouterr().out
    from mcuzoo.models import count_model

    params, macs = count_model("st_efficientnet_lc_v1", (128, 128, 3), 101)
    assert f"{params:,}" in out and f"{macs:,}" in out and "…" not in out


# ----------------------------------------------------------------------------- a closed pipe


def test_closed_pipe_exits_quietly():
    """`mcuzoo ... | head -1`: no BrokenPipeError, no 'internal error', just the Unix exit status of a closed pipe."""
    # more than a pipe's buffer (64 KiB), so that the writer meets the closed pipe
    code = ("import sys\nfrom mcuzoo.cli import main\nfor _ in range(200):\n    rc = main(['config', '--keys'])\n"
            "    if rc:\n        sys.exit(rc)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    p.stdout.readline()
    p.stdout.close()  # the reader goes away after one line
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert "Error" not in err and "internal error" not in err, err
    assert rc == 141


# ----------------------------------------------------------------------------- the Python API runs as the CLI


def test_import_mcuzoo_sets_the_cli_environment():
    code = ("import os, sys, mcuzoo; from mcuzoo.console import TF_ENV; "
            "assert all(os.environ[k] == v for k, v in TF_ENV.items()), dict(os.environ); "
            "assert 'tensorflow' not in sys.modules; "
            "import warnings; assert any(f[0] == 'ignore' and f[2] is DeprecationWarning for f in warnings.filters)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


TINY = ["name=same", "dataset.samples_per_class=8", "training.epochs=1", "training.lr_schedule.name=plateau",
        "training.batch_size=32",
        "training.verbose=false", "stages=[train]"]


def test_python_api_and_cli_train_the_same_numbers(tmp_path):
    """mcuzoo.run in one fresh process, `mcuzoo run` in another: epoch 1 loss identical to the last bit."""
    api = tmp_path / "api"
    cli = tmp_path / "cli"
    code = ("import sys, mcuzoo; cfg = mcuzoo.load_config(sys.argv[1], sys.argv[2:]); print(mcuzoo.run(cfg))")
    a = subprocess.run([sys.executable, "-c", code, str(REPO / "configs" / "quickstart.yaml"), *TINY, f"output_dir={api}"],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert a.returncode == 0, a.stderr[-2000:]
    c = subprocess.run([sys.executable, "-m", "mcuzoo", "run", str(REPO / "configs" / "quickstart.yaml"), *TINY,
                        f"output_dir={cli}"], capture_output=True, text=True, env=_env(), timeout=600)
    assert c.returncode == 0, c.stderr[-2000:]
    assert "oneDNN" not in a.stderr + c.stderr  # TensorFlow's start-up chatter is kept out of both
    runs = [Path(a.stdout.strip().splitlines()[-1]), Path(c.stdout.strip().splitlines()[-1])]  # the run dir, on stdout
    losses = [json.loads((r / "history.json").read_text())["history"]["loss"][0] for r in runs]
    assert losses[0] == losses[1]


# ----------------------------------------------------------------------------- evaluate never misleads


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A tiny run trained on a class-per-folder dataset (3 classes x 20 PNGs), with a held-out test split."""
    import numpy as np
    from PIL import Image

    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    root = tmp_path_factory.mktemp("data") / "shapes3"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["bar", "dot", "ring"]):
        (root / name).mkdir(parents=True)
        for i in range(20):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            img[4 + 6 * c:10 + 6 * c, :] = 250  # a class-dependent band: learnable in one epoch or not, either is fine
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, ["name=folder", "dataset.name=folder", f"dataset.path={root}", "dataset.test_split=0.25",
                             "dataset.validation_split=0.2", "training.epochs=1", "training.batch_size=16",
                             "training.verbose=false", "stages=[train]", f"output_dir={out}"])
    return run(cfg), root


def test_evaluate_on_the_training_folder_warns_loudly(folder_run, capsys):
    run_dir, root = folder_run
    model = str(run_dir / "float_model.keras")
    assert main(["evaluate", model, str(root)]) == 0
    out, err = capsys.readouterr()
    assert "warning:" in err and "not a test score" in err and "--split test" in err
    # 60 images: 15 test, then 20 % of the other 45 for validation (9), 36 for training: 45 seen
    assert "45 of the 60 images" in err and "training (36)" in err and "validation (9)" in err
    assert "top-1" in out and "not a test score" in out
    for name in ("bar", "dot", "ring"):  # per-class accuracy, in the text output too
        assert name in out
    assert main(["evaluate", model, str(root), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["overlap"]["in_training_split"] == 36 and res["overlap"]["in_validation_split"] == 9
    assert res["n"] == 60


def test_evaluate_split_test_scores_the_runs_own_test_split(folder_run, capsys):
    run_dir, root = folder_run
    model = str(run_dir / "float_model.keras")
    for argv in (["evaluate", model, "--split", "test", "--json"],  # the run the model lies in
                 ["evaluate", model, str(root), "--split", "test", "--json"],  # that folder, split as the run did
                 ["evaluate", model, str(run_dir), "--json"],  # a run directory: its test split
                 ["evaluate", model, str(run_dir / "config.yaml"), "--json"]):
        assert main(argv) == 0, argv
        out, err = capsys.readouterr()
        res = json.loads(out)
        assert res["n"] == 15 and res["split"] == "test" and "overlap" not in res, argv
        assert "warning" not in err
    assert main(["evaluate", model, "--split", "validation", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 9


def test_evaluate_a_run_config_with_a_moved_dataset(folder_run, tmp_path, capsys):
    """A run's split from any checkout: the data moved, dataset.path=... says where it is now."""
    import shutil

    run_dir, root = folder_run
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    model = str(run_dir / "float_model.keras")
    assert main(["evaluate", model, str(run_dir / "config.yaml"), f"dataset.path={moved}", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 15 and res["split"] == "test"
    assert main(["evaluate", model, str(root), "dataset.path=x"]) == 2  # overrides need a run's config
    assert "overrides apply to a run's config" in capsys.readouterr().err


def test_evaluate_on_other_data_does_not_warn(folder_run, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    run_dir, _ = folder_run
    other = tmp_path / "other"
    for name in ("bar", "dot", "ring"):
        (other / name).mkdir(parents=True)
        Image.fromarray(np.full((28, 28), 128, np.uint8)).save(other / name / "x.png")
    assert main(["evaluate", str(run_dir / "float_model.keras"), str(other)]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "3 images" in out


# ----------------------------------------------------------------------------- config checks at config time


@pytest.mark.parametrize("overrides, message, code", [
    (["model.name=st_mnist"], "unknown model 'st_mnist'", 2),
    (["model.name=squeezenet_v1_0", "model.input_shape=[16,16,3]"], "input 16x16 is too small", 2),
    (["training.initial_weights=no/such/model.keras"], "training.initial_weights: model file not found", 1),
])
def test_config_makes_the_checks_run_makes(overrides, message, code, tmp_path, capsys):
    """`mcuzoo config` refuses what `mcuzoo run` would refuse before reading data, with the same message."""
    assert main(["config", *overrides]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert main(["run", str(REPO / "configs" / "quickstart.yaml"), *overrides, f"output_dir={tmp_path}"]) == code
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- paths in configs


def _folder_config(tmp_path, path_value: str, extra: str = "") -> Path:
    sub = tmp_path / "project" / "configs"
    sub.mkdir(parents=True)
    cfg = sub / "my.yaml"
    cfg.write_text(f"dataset: {{name: folder, path: {path_value}}}\n{extra}")
    return cfg


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    from mcuzoo.config import load_config

    cfg = _folder_config(tmp_path, "../data/pets", "training: {initial_weights: ../runs/a/float_model.keras}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    c = load_config(cfg)
    assert c.dataset.path == str(tmp_path / "project" / "data" / "pets")
    assert c.training.initial_weights == str(tmp_path / "project" / "runs" / "a" / "float_model.keras")
    # on the command line: against the current directory
    c = load_config(cfg, ["dataset.path=mine", "training.initial_weights=w.keras"])
    assert c.dataset.path == str(elsewhere / "mine") and c.training.initial_weights == str(elsewhere / "w.keras")


def test_a_missing_folder_is_named_absolutely(tmp_path, monkeypatch, capsys):
    cfg = _folder_config(tmp_path, "../data/pets")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "info", str(cfg.relative_to(tmp_path))]) != 0
    err = capsys.readouterr().err
    assert str(tmp_path / "project" / "data" / "pets") in err and len(err.strip().splitlines()) == 1


def test_paths_relative_to_the_current_directory_still_load(tmp_path, monkeypatch):
    """A config of an earlier version (paths from where the command ran) keeps working there."""
    from mcuzoo.config import load_config

    (tmp_path / "data" / "pets").mkdir(parents=True)
    cfg = _folder_config(tmp_path, "data/pets")  # not under project/configs/, but under the current directory
    monkeypatch.chdir(tmp_path)
    assert load_config(cfg).dataset.path == str(tmp_path / "data" / "pets")


def test_config_written_relative_to_its_folder_loads_anywhere(tmp_path, monkeypatch):
    from mcuzoo.config import config_to_yaml, load_config

    cfg = load_config(None, ["dataset.name=folder", f"dataset.path={tmp_path / 'data' / 'pets'}"])
    zoo = tmp_path / "zoo" / "m" / "pets_28"
    zoo.mkdir(parents=True)
    text = config_to_yaml(cfg, relative_to=zoo)
    assert "path: ../../../data/pets" in text
    (zoo / "config.yaml").write_text(text)
    monkeypatch.chdir(tmp_path / "zoo")
    assert load_config(zoo / "config.yaml") == cfg
    # the writer's own output folder means nothing on another machine: the default (cwd-relative) instead
    mine = load_config(None, ["dataset.name=folder", f"dataset.path={tmp_path / 'data' / 'pets'}",
                              f"output_dir={tmp_path / 'longruns'}"])
    assert load_config(None, [f"output_dir={tmp_path / 'longruns'}"]).output_dir == str(tmp_path / "longruns")
    (zoo / "config.yaml").write_text(config_to_yaml(mine, relative_to=zoo))
    assert load_config(zoo / "config.yaml") == cfg  # output_dir: runs
    assert "output_dir: keep/me" in config_to_yaml(cfg.model_copy(update={"output_dir": "keep/me"}), relative_to=zoo)


def test_data_preview_writes_into_the_output_folder(tmp_path, monkeypatch, capsys):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    out = tmp_path / "runs"
    assert main(["data", "preview", str(REPO / "configs" / "quickstart.yaml"), "dataset.samples_per_class=2",
                 f"output_dir={out}", "--n", "4"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(out / "quickstart_augmentation_preview.png") and Path(printed).is_file()
    assert not list(here.iterdir())  # nothing in the current directory
