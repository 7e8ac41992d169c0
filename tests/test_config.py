import math
import re

import pytest

from mcuzoo.cli import main
from mcuzoo.config import Config, apply_overrides, load_config, parse_override
from mcuzoo.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_are_valid():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.model.name == "st_mnist_v1"
    assert cfg.stages == ["train", "quantize", "evaluate"]


def test_quickstart_config_loads():
    from conftest import REPO

    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    assert cfg.dataset.name == "glyphs36"
    assert cfg.model.input_shape == (28, 28, 1)


def test_every_shipped_config_validates_and_has_its_own_run_name():
    """A config in configs/ that no longer validates would fail only when a user names it; two with one name
    would write (and --resume) the same run directory."""
    from conftest import REPO

    paths = sorted((REPO / "configs").glob("*.yaml"))
    assert len(paths) >= 5
    names = {}
    for path in paths:
        cfg = load_config(path)
        assert cfg.name not in names, f"{path.name} and {names.get(cfg.name)} share the run name {cfg.name}"
        names[cfg.name] = path.name
        if cfg.training.recipe_epochs is not None:  # a recipe cut to fit the machine says so on its card
            assert cfg.training.recipe_epochs >= cfg.training.epochs


def test_overrides_are_typed():
    cfg = load_config(None, ["training.epochs=3", "model.input_shape=[32,32,3]", "quantization.per_channel=false"])
    assert cfg.training.epochs == 3
    assert cfg.model.input_shape == (32, 32, 3)
    assert cfg.quantization.per_channel is False


def test_override_values_are_data_not_code():
    # a string that would run code if evaluated stays a string, and fails validation as one
    with pytest.raises(ConfigError, match="training.epochs"):
        load_config(None, ["training.epochs=__import__('os').getcwd()"])
    assert parse_override("name=!!python/object/apply:os.getcwd []")[1] == "!!python/object/apply:os.getcwd []"


def test_unknown_key_names_key_and_allowed(tmp_path):
    p = write(tmp_path, "training:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "training.epoch" in msg and "epochs" in msg and "batch_size" in msg
    assert "\n" not in msg


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        load_config(write(tmp_path, "modle: {}\n"))


@pytest.mark.parametrize("override, key", [
    ("training.epochs=-1", "training.epochs"),
    ("model.input_shape=[28,28,2]", "model.input_shape"),
    ("dataset.name=mnist", "dataset.name"),
    ("stages=[train,deploy]", "stages"),
    ("dataset.validation_split=1.5", "dataset.validation_split"),
])
def test_bad_values(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("overrides, message", [
    (["training.epochs=5", "training.lr_schedule.name=cosine", "training.lr_schedule.warmup_epochs=5"],
     "warmup_epochs (5) must be less than epochs (5)"),
    (["training.learning_rate=0.001", "training.lr_schedule.name=cosine", "training.lr_schedule.min_lr=0.01"],
     "min_lr (0.01) is above learning_rate (0.001)"),
    (["training.lr_schedule.name=step"], "training.lr_schedule.name"),
])
def test_bad_lr_schedule(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_section_given_as_a_plain_value_names_its_keys():
    with pytest.raises(ConfigError, match=re.escape("'training.lr_schedule': must be a mapping of min_lr, name, "
                                                    "warmup_epochs (got 'cosine')")):
        load_config(None, ["training.lr_schedule=cosine"])


def test_unknown_key_of_an_optional_section_lists_its_keys():
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'training.cluster.foo' (allowed: task_index, "
                                                    "workers)")):
        load_config(None, ['training.cluster={workers: ["h:1"], foo: 1}'])
    with pytest.raises(ConfigError, match=re.escape("'training.cluster': must be a mapping of task_index, workers")):
        load_config(None, ["training.cluster=3"])


def test_cosine_schedule_warms_up_then_decays_to_min_lr():
    from mcuzoo.train import scheduled_lr

    cfg = load_config(None, ["training.epochs=10", "training.learning_rate=0.01", "training.lr_schedule.name=cosine",
                             "training.lr_schedule.warmup_epochs=2", "training.lr_schedule.min_lr=0.001"])
    lrs = [scheduled_lr(cfg, e, 0.01) for e in range(10)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(0.01)  # linear warm-up, then the full rate
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))  # a strictly decreasing half cosine ...
    assert lrs[-1] == pytest.approx(0.001)  # ... that ends at min_lr on the last epoch
    assert lrs[6] == pytest.approx(0.001 + 0.5 * 0.009 * (1 + math.cos(math.pi * 4 / 7)))
    assert scheduled_lr(cfg, 9, 0.02) == pytest.approx(0.002)  # min_lr scales with the replicas' rate
    assert scheduled_lr(load_config(None, []), 3, 0.01) is None  # plateau: no fixed schedule


def test_dataset_path_required():
    with pytest.raises(ConfigError, match="dataset.path"):
        load_config(None, ["dataset.name=folder"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["training.epochs"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_stages_are_ordered():
    cfg = load_config(None, ["stages=[evaluate,train]"])
    assert cfg.stages == ["train", "evaluate"]


def test_cli_config_error_is_one_line_exit_2(tmp_path, capsys):
    p = write(tmp_path, "training:\n  epoch: 3\n")
    code = main(["run", str(p)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().startswith("mcuzoo: error: unknown config key 'training.epoch'")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def _leaves(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def test_config_keys_list_every_key_with_a_default_that_validates(capsys):
    import json

    assert main(["config", "--keys", "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)
    listed = {k["key"] for k in keys}
    assert listed == _leaves(Config().model_dump(mode="json"))  # every key of the schema, none invented
    by_key = {k["key"]: k for k in keys}
    assert by_key["training.lr_schedule.name"]["type"] == "plateau | cosine"
    assert by_key["training.epochs"]["limits"] == ">= 1, <= 100000"
    assert by_key["training.cluster"]["type"] == "mapping | null"  # an optional section, listed whole
    assert all(k["description"] for k in keys)
    for k in keys:  # each default, given back as an override, is valid and is the default
        cfg = load_config(None, [f"{k['key']}={json.dumps(k['default'])}"])
        value = cfg.model_dump(mode="json")
        for part in k["key"].split("."):
            value = value[part]
        assert value == k["default"], k["key"]


def test_config_keys_of_a_section_and_an_unknown_prefix(capsys):
    import json

    assert main(["config", "--keys", "training.lr_schedule", "--json"]) == 0
    listed = [k["key"] for k in json.loads(capsys.readouterr().out)]
    assert listed == ["training.lr_schedule.name", "training.lr_schedule.warmup_epochs", "training.lr_schedule.min_lr"]
    # with a config (here: overrides of the defaults), each key also shows the value it sets
    assert main(["config", "training.epochs=9", "training.lr_schedule.name=cosine", "--keys", "training", "--json"]) == 0
    rows = {k["key"]: k for k in json.loads(capsys.readouterr().out)}
    assert rows["training.lr_schedule.name"]["value"] == "cosine" and rows["training.lr_schedule.name"]["default"] == "plateau"
    assert rows["training.epochs"]["value"] == 9 and rows["training.seed"]["value"] == rows["training.seed"]["default"]
    assert main(["config", "--keys", "trainx"]) == 2  # a prefix matches the start of a key's segment, as typed
    err = capsys.readouterr().err
    assert "no config key starts with 'trainx'" in err and "training" in err and len(err.strip().splitlines()) == 1


def test_config_prints_the_validated_config_a_run_would_use(tmp_path, capsys):
    from conftest import REPO

    quickstart = str(REPO / "configs" / "quickstart.yaml")
    assert main(["config", quickstart, "training.epochs=3", "training.lr_schedule.name=cosine"]) == 0
    text = capsys.readouterr().out
    saved = write(tmp_path, text)
    want = load_config(quickstart, ["training.epochs=3", "training.lr_schedule.name=cosine"])
    assert load_config(saved) == want  # every default filled in; a file that runs as it stands
    assert "reduce_lr:" in text and "lr_schedule:" in text
    assert main(["config", "training.epochs=0"]) == 2  # the defaults plus an override, validated
    assert "training.epochs" in capsys.readouterr().err
    assert main(["config", "a.yaml", "b.yaml"]) == 2
    assert "one config file" in capsys.readouterr().err
