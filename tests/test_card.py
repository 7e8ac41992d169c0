"""Model card and plots of a tiny run: every figure on the card matches the run's artifacts."""
import argparse
import json
import re
import shutil

import numpy as np
import pytest

from mcuzoo import rundir
from mcuzoo.card import CARD_NAME, register_cli, render_card, write_card
from mcuzoo.config import load_config
from mcuzoo.errors import McuzooError
from mcuzoo.pipeline import run
from mcuzoo.plots import CONFUSION_FLOAT_PNG, CONFUSION_INT8_PNG, TRAINING_CURVES_PNG, write_plots

TINY = [
    "name=tiny", "dataset.samples_per_class=8", "training.epochs=1", "training.batch_size=32",
    "quantization.calibration_samples=8", "training.verbose=false",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("card_runs")
    return run(load_config(None, TINY + [f"output_dir={out}"]))


@pytest.fixture(scope="module")
def card(tiny_run):
    path = write_card(tiny_run)
    return path, path.read_text(encoding="utf-8")


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of the tiny run that a test may change."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    (dst / CARD_NAME).unlink(missing_ok=True)
    return dst


def section(text: str, heading_start: str) -> str:
    """The text from the heading that starts with ``heading_start`` to the next heading."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("#") and heading_start in ln)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end])


def table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row in ``text`` (header and separator rows included)."""
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in text.splitlines() if ln.startswith("|")]


def row_value(text: str, key: str) -> str:
    for cells in table_rows(text):
        if cells and cells[0] == key:
            return cells[1]
    raise AssertionError(f"no table row {key!r}")


def valid_png(path) -> bool:
    from PIL import Image

    data = path.read_bytes()
    with Image.open(path) as im:
        im.verify()
    return data.startswith(PNG_MAGIC) and len(data) > 1000


# ---------------------------------------------------------------------------


def test_card_and_plots_are_written(tiny_run, card):
    path, text = card
    assert path == tiny_run / CARD_NAME and path.is_file()
    for name in (CONFUSION_FLOAT_PNG, CONFUSION_INT8_PNG, TRAINING_CURVES_PNG):
        assert valid_png(tiny_run / name), name
        assert f"]({name})" in text  # linked relatively from the card
    assert not [p for p in tiny_run.iterdir() if ".tmp" in p.name]
    # the seeds' structure
    order = ["# ST MNIST v1", "## **Use case** : `Image classification`", "# Model description",
             "## Network information", "## Network inputs / outputs", "## Recommended platforms", "# Performances",
             "**MCU** memory footprint", "**MCU** inference time", "### Accuracy with", "## Training", "## How to reproduce",
             "# References"]
    pos = [text.find(h) for h in order]
    assert all(p >= 0 for p in pos), dict(zip(order, pos))
    assert pos == sorted(pos)
    assert "trained from scratch" in text and "tfs" in text and "reimplementation" in text


def test_accuracy_table_matches_metrics(tiny_run, card):
    _, text = card
    m = json.loads((tiny_run / rundir.METRICS).read_text())
    acc = section(text, "### Accuracy with")
    exact = "Int8, MCU-exact (TFLM reference kernels)"  # the int8 row names the kernels that measured it
    assert m["int8"]["kernels"] == "exact"
    rows = {cells[1]: cells for cells in table_rows(acc) if len(cells) == 5 and cells[1] in ("Float", exact)}
    assert set(rows) == {"Float", exact}
    assert "its top-1 is what the microcontroller computes" in acc
    for key, fmt in (("float", "Float"), ("int8", exact)):
        shown = rows[fmt][3]
        digits = len(shown.split(".")[1])
        assert float(shown) == pytest.approx(round(100 * m[key]["top1"], digits), abs=10 ** -digits / 2)
        assert rows[fmt][2] == "28x28x1"
        assert f"{m[key]['n']:,} images" in rows[fmt][4] and m["evaluation_split"] in rows[fmt][4]
    assert f"{m['evaluation_split']} split, {m['float']['n']:,} images" in acc
    assert "glyphs36" in acc and f"Number of classes: {m['num_classes']}" in acc


def test_params_and_macs_match_the_model(tiny_run, card):
    from mcuzoo.models import total_macs
    from mcuzoo.models import load_keras_model

    _, text = card
    model = load_keras_model(tiny_run / rundir.FLOAT_MODEL)
    info = section(text, "## Network information")
    params = row_value(info, "Params")
    assert params.startswith(f"{model.count_params():,} ")
    assert model.count_params() == 10372  # the card's ST MNIST v1 at 36 classes
    assert row_value(info, "MACs").startswith(f"{total_macs(model):,}")
    quant = row_value(info, "Quantization")
    assert "int8" in quant and "per-channel" in quant
    m = json.loads((tiny_run / rundir.METRICS).read_text())
    assert f"{m['quantization']['calibration_images']} training images" in quant
    assert f"{m['quantization']['size_bytes']:,} bytes" in row_value(info, "int8 model file")
    assert "fine-tuning" not in quant


def test_card_says_when_int8_comes_from_quantization_aware_fine_tuning(run_copy):
    m = json.loads((run_copy / rundir.METRICS).read_text())
    m["qat"] = {"epoch": 2, "epochs": 4, "file": "float_model_qat.keras", "val_drop": 0.0034, "val_drop_ptq": 0.0136,
                "val_kl": 0.0051, "val_kl_ptq": 0.0093}
    rundir.write_json(run_copy / rundir.METRICS, m)
    quant = row_value(section(render_card(run_copy), "## Network information"), "Quantization")
    assert ("made from `float_model_qat.keras`, the float model after 2 of 4 epochs of quantization-aware "
            "fine-tuning") in quant and "loses 0.34 points against float there, 1.36 without it" in quant
    assert "KL divergence 0.00510, 0.00930 without it" in quant
    m["qat"] = {"epoch": 0, "epochs": 3, "file": None, "val_drop": 0.01, "val_drop_ptq": 0.01}
    rundir.write_json(run_copy / rundir.METRICS, m)
    quant = row_value(section(render_card(run_copy), "## Network information"), "Quantization")
    assert "3 epochs of quantization-aware fine-tuning were tried and not kept" in quant


def test_io_tables_read_from_the_tflite(tiny_run, card):
    from ai_edge_litert.interpreter import Interpreter

    _, text = card
    it = Interpreter(model_path=str(tiny_run / rundir.INT8_TFLITE))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    io = section(text, "## Network inputs / outputs")
    rows = {cells[0]: cells[1] for cells in table_rows(io)}
    in_shape, out_shape = str(tuple(int(s) for s in inp["shape"])), str(tuple(int(s) for s in out["shape"]))
    assert in_shape == "(1, 28, 28, 1)" and out_shape == "(1, 36)"
    assert "UINT8" in rows[in_shape] and "grey-scale" in rows[in_shape]
    assert "FLOAT32" in rows[out_shape] and "36 classes" in rows[out_shape]
    assert f"zero point {inp['quantization'][1]}" in io


def test_training_settings_come_from_the_config(tiny_run, card):
    import yaml

    _, text = card
    cfg = yaml.safe_load((tiny_run / rundir.CONFIG).read_text())
    m = json.loads((tiny_run / rundir.METRICS).read_text())
    tr = section(text, "## Training")
    assert row_value(tr, "Optimizer") == cfg["training"]["optimizer"]
    assert row_value(tr, "Learning rate").startswith(f"{cfg['training']['learning_rate']:g}")
    assert row_value(tr, "Batch size") == str(cfg["training"]["batch_size"])
    assert row_value(tr, "Epochs").startswith(f"{m['training']['epochs_run']} run")
    assert row_value(tr, "Best epoch (kept)").startswith(str(m["training"]["best_epoch"]))
    assert f"patience={cfg['training']['reduce_lr']['patience']}" in row_value(tr, "Callbacks")
    assert row_value(tr, "Training time") == f"{m['training']['seconds']:,} s"
    assert "```bash\nmcuzoo run config.yaml\n```" in text
    assert "Initial weights" not in tr  # trained from scratch


def test_card_names_the_initial_weights_of_a_continued_run(run_copy):
    import yaml

    cfg = yaml.safe_load((run_copy / rundir.CONFIG).read_text())
    cfg["training"]["initial_weights"] = "runs/first/float_model.keras"
    (run_copy / rundir.CONFIG).write_text(yaml.safe_dump(cfg))
    tr = section(write_card(run_copy).read_text(encoding="utf-8"), "## Training")
    assert row_value(tr, "Initial weights").startswith("`runs/first/float_model.keras` (training continued")
    how = section(write_card(run_copy).read_text(encoding="utf-8"), "## How to reproduce")
    assert "Training starts from the weights in `runs/first/float_model.keras`" in how


def test_card_names_a_cosine_schedule_instead_of_the_plateau_callback(run_copy):
    import yaml

    cfg = yaml.safe_load((run_copy / rundir.CONFIG).read_text())
    cfg["training"]["lr_schedule"] = {"name": "cosine", "warmup_epochs": 3, "min_lr": 1e-5}
    (run_copy / rundir.CONFIG).write_text(yaml.safe_dump(cfg))
    tr = section(write_card(run_copy).read_text(encoding="utf-8"), "## Training")
    cbs = row_value(tr, "Callbacks")
    assert row_value(tr, "Learning rate").endswith("(peak)")
    assert cbs.startswith("learning rate: 3 warm-up epochs, then cosine decay to 1e-05 at the last epoch")
    assert "ReduceLROnPlateau" not in cbs and "EarlyStopping(monitor=val_accuracy" in cbs


def test_without_analysis_the_card_says_not_measured(tiny_run, card):
    _, text = card
    assert not (tiny_run / rundir.ANALYSIS).exists()
    assert "Not analysed" in section(text, "## Recommended platforms")
    assert "not measured" in section(text, "memory footprint")
    assert "not measured" in section(text, "inference time")
    assert "STM32H747 |" not in text  # no invented board rows


FAKE_ANALYSIS = {
    "params": 9732, "macs": 1076384, "weights_bytes": 10328, "quant_params_bytes": 1648,
    "activation_bytes": 12345, "activation_lower_bound_bytes": 11111, "activation_baseline_bytes": 13579,
    "input_bytes": 784, "output_bytes": 144, "io_in_arena": True, "planner": "size/first-fit", "layers": [],
    "tflm_arena_bytes": 20000, "runtime": "tflm", "tflm_arena": {"planned_bytes": 13579, "persistent_bytes": 6421},
    "boards": {
        "STM32H747": {"series": "STM32H7", "core": "cortex-m7", "mhz": 400, "fits": True, "runtime": "tflm",
                      "ram_region": "AXI SRAM", "ram_region_bytes": 524288,
                      "ram_headroom_bytes": 1022784, "flash_headroom_bytes": 1982776,
                      "latency_ms_estimate": 3.535, "latency_calibrated": True},
        "STM32L0X": {"series": "STM32L0", "core": "cortex-m0+", "mhz": 32, "fits": False, "runtime": "tflm",
                     "note": "the arena is larger than its largest block",
                     "ram_headroom_bytes": -7000, "flash_headroom_bytes": -2048,
                     "latency_ms_estimate": 123.4, "latency_calibrated": False},
        "STM32MP157": {"series": "STM32MP1", "core": "cortex-a7", "mhz": 800, "fits": True, "runtime": "tflm",
                       "ram_headroom_bytes": 536845120, "flash_headroom_bytes": None,
                       "latency_ms_estimate": 0.709, "latency_calibrated": True},
    },
    "fits_on": ["STM32H747", "STM32MP157"],
    "host_latency_ms": {"LiteRT": 0.0447},
    "host": "Test CPU 9000 (x86_64, 4 threads)",
    "latency_model": {"max_abs_loo_error_pct": 16.5, "max_abs_fitted_error_pct": 7.2},
}


def test_fake_analysis_fills_footprint_platforms_and_latency(run_copy):
    rundir.write_json(run_copy / rundir.ANALYSIS, FAKE_ANALYSIS)
    text = render_card(run_copy)
    mem = section(text, "memory footprint")
    row = next(c for c in table_rows(mem) if c[1] == "Int8")
    assert row[3] == "12.06 KiB" and row[4] == "10.09 KiB"  # 12345 and 10328 bytes
    assert row[5] == "19.53 KiB" and row[6] == "13.26 KiB" and row[7] == "10.85 KiB"  # TFLM arena, greedy, bound
    assert "TFLM tensor arena" in mem and "Activation RAM (cards' convention)" in mem
    assert "13.26 KiB of planned tensors + 6.27 KiB persistent" in mem and "The board fits below use it" in mem
    assert "counted in the activation RAM" in mem and "not STM32Cube.AI" in text
    plat = section(text, "## Recommended platforms")
    rows = {c[1]: c for c in table_rows(plat)}
    assert rows["STM32H747"][3] == "[x]" and rows["STM32MP157"][3] == "[x]"
    assert rows["STM32H747"][4] == "998.81 KiB in AXI SRAM" and rows["STM32L0X"][4] == "-6.84 KiB"
    assert rows["STM32L0X"][3] == "[] *" and "STM32L0X: the arena is larger than its largest block" in plat
    assert "whole tensor arena" in plat and "one RAM region" in plat
    assert rows["STM32MP157"][5] == "no flash limit" and rows["STM32MP157"][4] == "511.98 MiB"
    assert "Fits on: STM32H747, STM32MP157." in plat
    lat = section(text, "inference time")
    rows = {c[3]: c for c in table_rows(lat) if len(c) == 7}
    assert rows["STM32H747"][5] == "3.535 ms" and rows["STM32H747"][6].startswith("*estimate*")
    assert "uncalibrated" in rows["STM32L0X"][6]
    host = next(k for k in rows if k.startswith("host"))
    assert "Test CPU 9000" in host and rows[host][5] == "0.045 ms" and rows[host][6].startswith("*measured* (LiteRT")
    assert "leave-one-out error up to 16 %" in lat
    info = section(text, "## Network information")
    assert row_value(info, "Params in the int8 graph").startswith("9,732")


def test_onnx_and_mixed_rows_when_measured(run_copy):
    m = json.loads((run_copy / rundir.METRICS).read_text())
    m["onnx_qdq"] = {"top1": 0.123456, "n": m["float"]["n"], "file": "model_qdq_int8.onnx"}
    m["mixed"] = {"accuracy": 0.111111, "w4_share": 26.1, "w8_share": 73.9, "file": "model_qdq_w4_26.1_w8_73.9_a8_100.onnx"}
    rundir.write_json(run_copy / rundir.METRICS, m)
    acc = section(render_card(run_copy), "### Accuracy with")
    rows = {c[1]: c for c in table_rows(acc) if len(c) == 5}
    assert rows["Int8 (ONNX QDQ)"][3] == "12.35"
    assert rows["Int8 (ONNX QDQ)"][4] == rows["Float"][4]  # same split and image count as the float row
    mixed = next(k for k in rows if k.startswith("Int8/Int4"))
    assert rows[mixed][3] == "11.11" and "w4 26.1 %" in mixed and "validation" in rows[mixed][4]
    assert "keeps the fewest" not in acc  # the search's own figures are missing: no note
    m["mixed"].update(tolerance=0.015, accuracy_int8=0.12, confidence=0.9, drop=0.003125, drop_se=0.00541)
    rundir.write_json(run_copy / rundir.METRICS, m)
    acc = section(render_card(run_copy), "### Accuracy with")
    assert ("within 1.5 points of the all-int8 model with 90 % confidence (on the same validation images: "
            "-0.31 ± 0.54 points against all-int8") in acc and "test split took no part" in acc


def test_reproduce_names_the_quantize_command_for_models_the_stages_did_not_make(run_copy, card):
    _, own = card
    assert "mcuzoo quantize RUN_DIR" not in section(own, "## How to reproduce")  # the tiny run made nothing extra
    m = json.loads((run_copy / rundir.METRICS).read_text())
    m["onnx_qdq"] = {"top1": 0.5, "file": "model_qdq_int8.onnx", "calibration_method": "entropy",
                     "calibration_images": 77}
    m["quant_report"] = {"json": "quant_report.json"}
    m.pop("mixed", None)
    rundir.write_json(run_copy / rundir.METRICS, m)
    repro = section(render_card(run_copy), "## How to reproduce")
    assert "mcuzoo quantize RUN_DIR --onnx --report" in repro
    assert "entropy calibration, 77 training images" in repro and "mixed" not in repro
    cfg = (run_copy / rundir.CONFIG).read_text()
    (run_copy / rundir.CONFIG).write_text(cfg.replace("onnx: false", "onnx: true").replace("report: false", "report: true"))
    assert "mcuzoo quantize" not in section(render_card(run_copy), "## How to reproduce")


def test_missing_artifacts_degrade(run_copy):
    for name in (rundir.INT8_TFLITE, rundir.TRAINING_LOG, rundir.FLOAT_MODEL):
        (run_copy / name).unlink()
    m = json.loads((run_copy / rundir.METRICS).read_text())
    del m["int8"]
    rundir.write_json(run_copy / rundir.METRICS, m)
    for p in run_copy.glob("*.png"):
        p.unlink()
    written = write_plots(run_copy)
    assert [p.name for p in written] == [CONFUSION_FLOAT_PNG]
    text = write_card(run_copy).read_text()
    assert "not measured" in section(text, "## Network inputs / outputs")
    assert row_value(section(text, "## Network information"), "Params") == "not measured"
    assert CONFUSION_INT8_PNG not in text and TRAINING_CURVES_PNG not in text


def test_run_without_metrics_is_one_line_error(tmp_path):
    with pytest.raises(McuzooError) as e:
        write_card(tmp_path)
    assert "metrics.json" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(McuzooError):
        write_card(tmp_path / "missing")


def test_card_cli(run_copy, capsys):
    parser = argparse.ArgumentParser(prog="mcuzoo")
    register_cli(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["card", str(run_copy), "--no-plots"])  # plots: see test_card_and_plots_are_written
    assert args.fn(args) == 0
    assert capsys.readouterr().out.strip() == str(run_copy / CARD_NAME)
    assert (run_copy / CARD_NAME).is_file()
    assert not (run_copy / rundir.LOCK_NAME).exists()


def test_confusion_png_many_classes(tmp_path):
    from mcuzoo.plots import confusion_png

    k = 40
    conf = np.eye(k, dtype=int) * 20 + 1
    p = confusion_png(conf.tolist(), [f"class_{i}" for i in range(k)], tmp_path / "c.png", "big")
    assert valid_png(p)
    with pytest.raises(McuzooError):
        confusion_png([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "bad.png")


def test_card_headroom_regex_sanity(card):
    # every KiB figure on the card is a number with two decimals, never a bare float repr
    _, text = card
    assert not re.search(r"\d\.\d{4,} KiB", text)


@pytest.mark.parametrize("first", [0, 1])
def test_training_curves_from_either_log_format(tmp_path, first):
    """Keras' CSVLogger counts epochs from 0, mcuzoo's own log from 1: both plot as epochs 1..n."""
    from mcuzoo.plots import read_training_log, training_curves_png

    log = tmp_path / "training_log.csv"
    rows = ["epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"]
    rows += [f"{first + i},{0.5 + 0.1 * i},{0.01 / 2 ** i},{1.0 - 0.2 * i},{0.4 + 0.1 * i},{1.1 - 0.2 * i}" for i in range(3)]
    log.write_text("\n".join(rows) + "\n")
    assert read_training_log(log)["epoch"] == [first, first + 1, first + 2]
    assert valid_png(training_curves_png(log, tmp_path / "curves.png"))


def test_augmentation_from_the_config(run_copy):
    import yaml

    cfg = yaml.safe_load((run_copy / rundir.CONFIG).read_text())
    aug = cfg.get("augmentation")
    assert isinstance(aug, dict) and isinstance(aug.get("rotation"), dict), "config.yaml writes every augmentation kind"
    text = render_card(run_copy)
    active = [k for k, v in aug.items() if isinstance(v, dict) and v.get("rate", 0) > 0]
    shown = row_value(section(text, "## Training"), "Augmentation")
    assert shown.startswith("none") == (not active)
    aug["rotation"]["rate"] = 0.5
    rundir.write_text(run_copy / rundir.CONFIG, yaml.safe_dump(cfg, sort_keys=False))
    shown = row_value(section(render_card(run_copy), "## Training"), "Augmentation")
    assert "rotation (rate 0.5" in shown and f"max_degrees {aug['rotation']['max_degrees']}" in shown


def test_card_of_a_model_near_chance_warns_at_the_top(run_copy):
    m = json.loads((run_copy / rundir.METRICS).read_text())
    conf = m["float"]["confusion"]
    n, k = sum(map(sum, conf)), len(conf)
    chance = max(map(sum, conf)) / n  # the tiny run's test split is balanced: 1 / k
    for top1, warned in ((chance + 0.2 * (1 - chance), True), (chance + 0.3 * (1 - chance), False)):
        m["float"]["top1"] = top1
        rundir.write_json(run_copy / rundir.METRICS, m)
        text = render_card(run_copy)
        head = text.split("## **Use case**")[0]
        assert ("far below a usable accuracy" in head) is warned, head
        if warned:
            assert f"{100 * chance:.2f} % for always answering the most frequent class" in head
            assert "20 % of the way" in head and k == 36
    m["float"]["confusion"] = None  # no confusion matrix: chance is 1 / classes
    m["float"]["top1"] = 0.05
    rundir.write_json(run_copy / rundir.METRICS, m)
    assert "2.78 % for always answering" in render_card(run_copy)


def test_quantize_verb_refreshes_the_card(run_copy, capsys):
    from mcuzoo.cli import main

    write_card(run_copy, plots=False)
    assert "ONNX QDQ" not in section((run_copy / CARD_NAME).read_text(), "### Accuracy with")
    assert main(["quantize", str(run_copy), "--onnx"]) == 0
    acc = section((run_copy / CARD_NAME).read_text(), "### Accuracy with")
    assert "Int8 (ONNX QDQ)" in acc and "model_qdq_int8.onnx" in acc
    assert "model card refreshed" in capsys.readouterr().err
    assert not (run_copy / rundir.LOCK_NAME).exists()


def test_card_names_the_run_of_a_renamed_folder(tiny_run, tmp_path):
    """A zoo folder (renamed from the run's) still names the run its config made; a run's own folder (tiny,
    tiny2, ...) names itself."""
    assert "artifacts of the run `tiny`" in render_card(tiny_run)
    zoo_folder = tmp_path / "shapes_32"
    shutil.copytree(tiny_run, zoo_folder)
    text = render_card(zoo_folder)
    assert "artifacts of the run `tiny`" in text and "run `shapes_32`" not in text
    again = tmp_path / "tiny2"
    shutil.copytree(tiny_run, again)
    assert "artifacts of the run `tiny2`" in render_card(again)


def test_card_says_when_the_recipes_schedule_was_cut(run_copy):
    import yaml

    cfg = yaml.safe_load((run_copy / rundir.CONFIG).read_text())
    epochs = cfg["training"]["epochs"]
    tr = section(write_card(run_copy).read_text(encoding="utf-8"), "## Training")
    assert "recipe's schedule" not in tr
    cfg["training"]["recipe_epochs"] = 1000
    (run_copy / rundir.CONFIG).write_text(yaml.safe_dump(cfg))
    tr = section(write_card(run_copy).read_text(encoding="utf-8"), "## Training")
    assert row_value(tr, "Epochs").endswith(f"the recipe's schedule is 1000 epochs, cut to {epochs} to fit the "
                                            "machine** (`training.recipe_epochs`)")


def test_recipe_epochs_cannot_be_shorter_than_epochs():
    with pytest.raises(McuzooError, match="recipe_epochs"):
        load_config(None, ["training.epochs=50", "training.recipe_epochs=40"])
    assert load_config(None, ["training.epochs=50", "training.recipe_epochs=1000"]).training.recipe_epochs == 1000


def test_the_runs_notes_keep_no_path_of_the_machine(run_copy):
    m = json.loads((run_copy / rundir.METRICS).read_text())
    m["notes"] = ["Food-101 /work/shared/data/food-101-10: 10 classes", "folder ../shared/data/flowers: 5 classes"]
    rundir.write_json(run_copy / rundir.METRICS, m)
    text = render_card(run_copy)
    assert "- Food-101 food-101-10: 10 classes" in text and "- folder ../shared/data/flowers: 5 classes" in text
    assert "/work/" not in text
