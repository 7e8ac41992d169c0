"""kill -9 a run mid-training, resume it, and get the same model as an uninterrupted run."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mcuzoo import rundir

ARGS = ["name=r", "dataset.samples_per_class=60", "training.epochs=4", "training.batch_size=32",
        "stages=[train]", "training.verbose=false"]


def mcuzoo(*args, **kw):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "mcuzoo", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def weights(path):
    import keras

    import mcuzoo.models  # noqa: F401

    return keras.saving.load_model(path, safe_mode=True).get_weights()


def log_rows(run_dir):
    with open(run_dir / rundir.TRAINING_LOG) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    p = d / "c.yaml"
    p.write_text(f"output_dir: {d / 'runs'}\n")
    return p


@pytest.fixture(scope="module")
def reference_run(config):
    """The uninterrupted run the tests below compare with (made once, whichever test asks first)."""
    ref = mcuzoo("run", str(config), *ARGS, "name=ref")
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out.decode()[-2000:]
    return config.parent / "runs" / "ref"


def test_kill_and_resume_equals_uninterrupted(config, reference_run):
    ref_dir = reference_run

    # the same run, killed with SIGKILL once its second epoch is checkpointed
    victim = mcuzoo("run", str(config), *ARGS)
    run_dir = config.parent / "runs" / "r"
    state = run_dir / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.is_file() and '"epoch": 2' in state.read_text():
            break
        if victim.poll() is not None:
            pytest.fail("run ended before it could be killed: " + victim.stdout.read().decode()[-2000:])
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert (run_dir / rundir.LOCK_NAME).exists()  # the dead process's lock is left behind ...
    assert len(log_rows(run_dir)) >= 1  # the log is rebuilt from the checkpointed state on resume
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name and p.suffix == ".json"]

    resumed = mcuzoo("run", "--resume", str(run_dir))  # ... and taken over, since its holder is dead
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out.decode()[-2000:]
    assert "resuming" in out.decode()

    # nothing lost: every epoch is logged once, and the models equal the uninterrupted run's
    rows, ref_rows = log_rows(run_dir), log_rows(ref_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    for a, b in zip(rows, ref_rows):
        assert float(a["val_accuracy"]) == pytest.approx(float(b["val_accuracy"]), abs=1e-6)
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)
    for a, b in zip(weights(run_dir / rundir.FLOAT_MODEL), weights(ref_dir / rundir.FLOAT_MODEL)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not (run_dir / rundir.LOCK_NAME).exists()
    assert len(list((run_dir / "checkpoints").glob("epoch_*.keras"))) == 1


def test_resume_of_finished_run_trains_nothing(reference_run):
    run_dir = reference_run
    before = (run_dir / rundir.FLOAT_MODEL).stat().st_mtime_ns
    p = mcuzoo("run", "--resume", str(run_dir))
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out.decode()
    assert "nothing to resume" in out.decode()
    assert (run_dir / rundir.FLOAT_MODEL).stat().st_mtime_ns == before


def test_run_cut_short_by_resume_with_fewer_epochs_finishes_its_stages(tmp_path):
    """A long run stopped after epoch 2 of 4, then `--resume RUN training.epochs=2`: no more training,
    but its history and the remaining stages (here: quantize) are written from the checkpoint."""
    import json

    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    args = [f"output_dir={tmp_path}", "dataset.samples_per_class=10", "training.epochs=2",
            "stages=[train, quantize]", "quantization.calibration_samples=8", "training.verbose=false"]
    run_dir = run(load_config(None, args))
    hist = json.loads((run_dir / rundir.HISTORY).read_text())
    # what a run killed after its second epoch's checkpoint leaves: no history, no int8 model
    (run_dir / rundir.HISTORY).unlink()
    (run_dir / rundir.INT8_TFLITE).unlink()
    run(resume=run_dir, overrides=["training.epochs=2"])
    again = json.loads((run_dir / rundir.HISTORY).read_text())
    assert again["epochs_run"] == 2 and again["history"] == hist["history"]
    assert (run_dir / rundir.INT8_TFLITE).is_file()


def test_resume_errors(tmp_path, capsys):
    from mcuzoo.cli import main

    assert main(["run", "--resume", str(tmp_path)]) == 1
    assert "no config.yaml" in capsys.readouterr().err
    assert main(["run"]) == 2


def test_augmented_training_is_deterministic(tmp_path):
    """Two runs with the same seed and augmentation give the same model (needed for exact resume)."""
    import json

    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    args = [f"output_dir={tmp_path}", "dataset.samples_per_class=10", "training.epochs=2", "stages=[train]",
            "training.verbose=false", "augmentation.rotation.rate=0.5", "augmentation.noise.rate=0.5",
            "augmentation.erasing.rate=0.3", "augmentation.flip.rate=0.2"]
    a, b = run(load_config(None, args)), run(load_config(None, args))
    ha, hb = (json.loads((d / rundir.HISTORY).read_text())["history"] for d in (a, b))
    assert ha["loss"] == hb["loss"]
    for x, y in zip(weights(a / rundir.FLOAT_MODEL), weights(b / rundir.FLOAT_MODEL)):
        np.testing.assert_array_equal(x, y)


def _kernels(path):
    import keras

    import mcuzoo.models  # noqa: F401

    m = keras.saving.load_model(path, safe_mode=True)
    return [np.asarray(w) for layer in m.layers for w in layer.trainable_weights]


def test_initial_weights_continue_from_another_run(tmp_path, capsys):
    """`training.initial_weights` starts a new run from a finished run's weights (not from random ones);
    a model of another shape or a missing file is a one-line error."""
    from mcuzoo.cli import main
    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    base = [f"output_dir={tmp_path}", "dataset.samples_per_class=10", "training.epochs=1", "stages=[train]",
            "training.verbose=false"]
    first = run(load_config(None, base + ["name=first"]))
    src = first / rundir.FLOAT_MODEL
    # a learning rate of ~0 keeps the trainable weights where they started: the first run's
    cont = run(load_config(None, base + ["name=cont", f"training.initial_weights={src}", "training.learning_rate=1e-12"]))
    fresh = run(load_config(None, base + ["name=fresh", "training.learning_rate=1e-12", "training.seed=1"]))
    a, b, c = _kernels(src), _kernels(cont / rundir.FLOAT_MODEL), _kernels(fresh / rundir.FLOAT_MODEL)
    assert all(np.allclose(x, y, atol=1e-6) for x, y in zip(a, b))
    assert not all(np.allclose(x, y, atol=1e-3) for x, y in zip(a, c))
    assert load_config(cont / rundir.CONFIG).training.initial_weights == str(src)  # the run records where it began

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output_dir: {tmp_path}\n")
    code = main(["run", str(cfg), "name=other", "dataset.samples_per_class=10", "training.epochs=1",
                 "stages=[train]", "training.verbose=false", "model.name=squeezenet_v1_0", "model.input_shape=[40,40,1]",
                 f"training.initial_weights={src}"])
    err = capsys.readouterr().err
    assert code == 1 and "initial_weights" in err and "not the same model" in err
    assert "Traceback" not in err
    code = main(["run", str(cfg), "name=missing", "dataset.samples_per_class=10", "training.epochs=1",
                 "stages=[train]", f"training.initial_weights={tmp_path / 'nope.keras'}"])
    err = capsys.readouterr().err
    assert code == 1 and "training.initial_weights: model file not found" in err and "nope.keras" in err
    assert "Traceback" not in err and not (tmp_path / "missing").exists()  # refused before a run directory is made


def test_resume_with_fewer_stages_keeps_what_the_others_measured(tmp_path):
    """`--resume RUN stages=[evaluate]` re-runs the evaluation only: the training and quantization figures stay in
    metrics.json, config.yaml keeps the run's stages, and the card still shows them."""
    import json

    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    args = [f"output_dir={tmp_path}", "dataset.samples_per_class=10", "training.epochs=1", "training.verbose=false",
            "stages=[train,quantize,evaluate,card]", "quantization.calibration_samples=8"]
    run_dir = run(load_config(None, args))
    before = json.loads((run_dir / rundir.METRICS).read_text())
    run(resume=run_dir, overrides=["stages=[evaluate, card]"])
    after = json.loads((run_dir / rundir.METRICS).read_text())
    for key in ("training", "quantization", "float", "int8"):
        assert after[key] == before[key], key
    assert load_config(run_dir / rundir.CONFIG).stages == ["train", "quantize", "evaluate", "card"]
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "this run has no quantization stage" not in card and f"{before['training']['epochs_run']} run" in card
    # a stage that runs again replaces its own entries: without QAT now, no stale "qat" entry
    before["qat"] = {"epoch": 1}
    rundir.write_json(run_dir / rundir.METRICS, before)
    run(resume=run_dir, overrides=["stages=[quantize]"])
    assert "qat" not in json.loads((run_dir / rundir.METRICS).read_text())
    run(resume=run_dir, overrides=["stages=[evaluate]"])
    assert "quantization" in json.loads((run_dir / rundir.METRICS).read_text())


def test_cosine_schedule_run_follows_the_schedule_and_resumes_on_it(tmp_path):
    """A cosine run's per-epoch rates are the schedule's (not changed by the plateau logic, even with a
    patience of 1), and a run cut short and resumed with more epochs continues on the schedule."""
    import json

    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run
    from mcuzoo.train import scheduled_lr

    args = [f"output_dir={tmp_path}", "dataset.samples_per_class=10", "training.epochs=4", "stages=[train]",
            "training.verbose=false", "training.learning_rate=0.004", "training.lr_schedule.name=cosine",
            "training.lr_schedule.warmup_epochs=1", "training.reduce_lr.patience=1"]
    cfg = load_config(None, args)
    run_dir = run(cfg)
    expected = [scheduled_lr(cfg, e, 0.004) for e in range(4)]
    logged = [float(r["learning_rate"]) for r in log_rows(run_dir)]
    assert logged == pytest.approx(expected, rel=1e-6)
    assert logged[1] == pytest.approx(0.004) and logged[3] == pytest.approx(0.0)
    hist = json.loads((run_dir / rundir.HISTORY).read_text())["history"]
    assert hist["learning_rate"] == pytest.approx(expected, rel=1e-6)
    # resumed with more epochs: the first four stay as logged, the new ones follow the longer schedule
    run(resume=run_dir, overrides=["training.epochs=6"])
    longer = load_config(run_dir / rundir.CONFIG)
    assert longer.training.epochs == 6
    logged = [float(r["learning_rate"]) for r in log_rows(run_dir)]
    assert logged[:4] == pytest.approx(expected, rel=1e-6)
    assert logged[4:] == pytest.approx([scheduled_lr(longer, e, 0.004) for e in (4, 5)], rel=1e-6)
    assert 0.0 < logged[4] < 0.004 and logged[5] == pytest.approx(0.0)
