"""`mcuzoo zoo compare`: a new run replaces a zoo model only when it scores higher on the validation images
that neither run trained on."""
import json
import os

import numpy as np
import pytest

from mcuzoo import rundir, zoo
from mcuzoo.cli import main
from mcuzoo.config import config_to_yaml, load_config
from mcuzoo.data.loading import load_run_dataset
from mcuzoo.errors import McuzooError

CLASSES = ["bar", "dot", "ring"]
COUNTS = (30, 15, 15)  # unbalanced: a model that always says "bar" beats one that always says "dot"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("data") / "shapes3"
    rng = np.random.default_rng(0)
    for name, n in zip(CLASSES, COUNTS):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def constant_run(folder, photos, says: str, validation_split: float):
    """A run directory whose float model always answers ``says`` (config, model_info, float_model)."""
    import keras

    cfg = load_config(None, [f"name={folder.name}", "dataset.name=folder", f"dataset.path={photos}",
                             "dataset.test_split=0.2", f"dataset.validation_split={validation_split}",
                             "model.input_shape=[16,16,1]"])
    folder.mkdir(parents=True)
    (folder / rundir.CONFIG).write_text(config_to_yaml(cfg))
    info = rundir.ModelInfo(CLASSES, (16, 16, 1), 1 / 255, 0.0)
    (folder / rundir.MODEL_INFO).write_text(json.dumps(info.to_json()))
    bias = np.full(3, -10.0, dtype=np.float32)
    bias[CLASSES.index(says)] = 10.0
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, kernel_initializer="zeros"), keras.layers.Softmax()])
    model.layers[1].set_weights([np.zeros((256, 3), np.float32), bias])
    model.save(folder / rundir.FLOAT_MODEL)
    return folder, cfg


def shared_labels(cfg_a, cfg_b):
    a, b = load_run_dataset(cfg_a), load_run_dataset(cfg_b)
    la = {os.path.realpath(p): int(y) for p, y in zip(a.val.paths, a.val.labels)}
    return [y for p, y in la.items() if p in {os.path.realpath(q) for q in b.val.paths}], len(a.val), len(b.val)


def test_compare_scores_both_on_the_validation_images_of_both(photos, tmp_path, capsys):
    new, cfg_new = constant_run(tmp_path / "new", photos, "bar", 0.3)
    old, cfg_old = constant_run(tmp_path / "zoo" / "m" / "shapes3_16", photos, "dot", 0.15)
    labels, n_new, n_old = shared_labels(cfg_new, cfg_old)
    assert 0 < len(labels) <= min(n_new, n_old)  # other validation splits (with one seed, the smaller is inside the larger)
    c = zoo.compare(new, old)
    assert (c.shared, c.new_val, c.old_val, c.same_test) == (len(labels), n_new, n_old, True)
    assert c.new_top1 == labels.count(0) / len(labels) and c.old_top1 == labels.count(1) / len(labels)
    assert c.replace is (labels.count(0) > labels.count(1)) is True
    assert c.diff.b_only == labels.count(0) and c.diff.a_only == labels.count(1)
    assert not zoo.compare(old, new).replace  # the other way round
    assert not zoo.compare(new, new).replace  # a tie keeps the zoo model
    assert main(["zoo", "compare", str(new), str(old)]) == 0
    out = capsys.readouterr().out
    assert f"{len(labels)} validation images held out from both runs" in out and out.rstrip().endswith(
        "replace: the new model scores higher")
    assert main(["zoo", "compare", str(old), str(new), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["replace"] is False and res["shared_validation_images"] == len(labels)
    assert res["paired"]["a_only"] == labels.count(0) and res["zoo_top1"] == round(labels.count(0) / len(labels), 6)


def test_compare_refuses_what_does_not_compare(photos, tmp_path, capsys):
    new, _ = constant_run(tmp_path / "new", photos, "bar", 0.3)
    with pytest.raises(McuzooError, match="has no config.yaml: not a run directory"):
        zoo.compare(new, tmp_path)
    a, b = constant_run(tmp_path / "a", photos, "bar", 0.3)[0], constant_run(tmp_path / "b", photos, "bar", 0.3)[0]
    for folder, split in ((a, 0.1), (b, 0.2)):  # images in memory, split two ways: nothing to match them by
        (folder / rundir.CONFIG).write_text(config_to_yaml(load_config(None, [
            "dataset.name=glyphs36", f"dataset.validation_split={split}", "dataset.samples_per_class=10"])))
    with pytest.raises(McuzooError, match="cannot be matched"):
        zoo.compare(a, b)
    with pytest.raises(McuzooError, match="different classes"):
        zoo.compare(new, a)
    assert main(["zoo", "compare", str(new), str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mcuzoo: error:") and len(err.strip().splitlines()) == 1
