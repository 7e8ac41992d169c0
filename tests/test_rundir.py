import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcuzoo import rundir
from mcuzoo.errors import RunDirError


def test_new_run_dir_increments(tmp_path):
    a = rundir.new_run_dir(tmp_path, "exp")
    b = rundir.new_run_dir(tmp_path, "exp")
    assert a.name == "exp" and b.name == "exp2"


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    rundir.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with rundir.atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_lock_refuses_second_live_holder(tmp_path):
    d = rundir.new_run_dir(tmp_path, "r")
    # another live process holds the lock
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (d / rundir.LOCK_NAME).write_text(f"{proc.pid} {rundir._start_time(proc.pid)}\n")
        with pytest.raises(RunDirError, match="in use"):
            rundir.RunLock(d).acquire()
    finally:
        proc.kill()
        proc.wait()
    # the holder died: its stale lock is taken over
    with rundir.RunLock(d):
        assert (d / rundir.LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert not (d / rundir.LOCK_NAME).exists()


def test_a_copied_lock_does_not_block_the_copy_but_a_renamed_folder_stays_locked(tmp_path):
    """cp -a of a running run directory (an interim copy of a long run) carries the live holder's lock: the
    lock names the folder it was written in, so the copy is free; the folder, renamed, is still held."""
    d = rundir.new_run_dir(tmp_path, "r")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (d / rundir.LOCK_NAME).write_text(f"{proc.pid} {rundir._start_time(proc.pid)} {rundir._folder_id(d)}\n")
        copy = Path(shutil.copytree(d, tmp_path / "copy"))
        with rundir.RunLock(copy):
            assert (copy / rundir.LOCK_NAME).read_text().split()[0] == str(os.getpid())
        moved = d.rename(tmp_path / "moved")
        with pytest.raises(RunDirError, match="in use"):
            rundir.RunLock(moved).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_read_json_errors(tmp_path):
    with pytest.raises(RunDirError, match="missing"):
        rundir.read_json(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RunDirError, match="not valid JSON"):
        rundir.read_json(tmp_path / "bad.json")


def test_input_scaling_prefers_the_models_own_info(tmp_path):
    from mcuzoo.config import load_config

    cfg = load_config(None, ["preprocessing.rescale=0.5", "preprocessing.offset=-1"])
    assert rundir.input_scaling(None, cfg) == (0.5, -1.0)
    info = rundir.ModelInfo(class_names=["a", "b"], input_shape=(8, 8, 1), rescale=1 / 255, offset=0.0)
    rundir.write_json(tmp_path / rundir.MODEL_INFO, info.to_json())
    read = rundir.read_model_info(tmp_path / rundir.FLOAT_MODEL)
    assert rundir.input_scaling(read, cfg) == (pytest.approx(1 / 255), 0.0)
