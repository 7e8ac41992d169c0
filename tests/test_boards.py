"""Board fits per runtime: RAM regions, tflm_arena_bytes vs the cards' convention, custom boards, the CLI."""
import json
from pathlib import Path

import pytest

from mcuzoo import cli
from mcuzoo.analysis import analyze, boards, tflm
from mcuzoo.config import load_config
from mcuzoo.errors import ConfigError, McuzooError

REPO = Path(__file__).resolve().parents[1]
EFFNET = REPO / "zoo" / "st_efficientnet_lc_v1" / "flowers_128" / "model_int8.tflite"
KiB = 1024
FEATS = dict.fromkeys(boards.FEATURES, 0.0)


def test_h747_ram_is_regions_and_the_arena_must_fit_one():
    h747 = boards.find_board("STM32H747")
    assert h747.largest_region.name == "AXI SRAM" and h747.largest_region.bytes == 512 * KiB
    assert h747.ram_bytes > 900 * KiB  # about 1 MiB in all, in four blocks
    fit = boards.board_fit(h747, 600 * KiB, 100 * KiB, FEATS)
    assert not fit["fits"] and fit["ram_region"] == "AXI SRAM" and fit["ram_headroom_bytes"] == -88 * KiB
    assert "largest block (AXI SRAM, 512 KiB)" in fit["note"] and "contiguous" in fit["note"]
    fit = boards.board_fit(h747, 500 * KiB, 100 * KiB, FEATS)
    assert fit["fits"] and fit["ram_headroom_bytes"] == 12 * KiB and "note" not in fit


def test_runtimes_differ_in_what_they_count():
    f769 = boards.find_board("STM32F769")  # one 512 KiB region
    tflm_fit = boards.board_fit(f769, 500 * KiB, 100 * KiB, FEATS, runtime="tflm")
    cards_fit = boards.board_fit(f769, 500 * KiB, 100 * KiB, FEATS, runtime="cards")
    assert tflm_fit["fits"] and tflm_fit["runtime_ram_bytes"] == 0
    assert not cards_fit["fits"] and cards_fit["runtime_ram_bytes"] == boards.RUNTIME_RAM_BYTES
    with pytest.raises(McuzooError, match="unknown runtime 'xnn'"):
        boards.board_fit(f769, 1, 1, FEATS, runtime="xnn")


def test_analysis_fits_use_tflm_arena_by_default_and_activations_with_cards():
    a = analyze(EFFNET, measure_host=False, search_order=False)
    want = tflm.tflm_arena_bytes(EFFNET)
    assert a.runtime == "tflm" and a.tflm_arena_bytes == want > a.activation_bytes
    h747 = a.boards["STM32H747"]
    assert h747["ram_needed_bytes"] == want and h747["ram_headroom_bytes"] == 512 * KiB - want
    assert h747["ram_region"] == "AXI SRAM"
    c = analyze(EFFNET, measure_host=False, search_order=False, runtime="cards")
    assert c.runtime == "cards" and c.tflm_arena_bytes == want  # still reported, beside
    assert c.boards["STM32H747"]["ram_needed_bytes"] == c.activation_bytes
    # a board whose largest block holds the activations but not TFLM's arena: fits only by the cards' convention
    small = boards.custom_board("Two200", ram="A=200KiB,B=200KiB", core="cortex-m7", mhz=400, flash="2MiB")
    assert a.activation_bytes < 200 * KiB < want
    a2 = analyze(EFFNET, small, measure_host=False, search_order=False)
    c2 = analyze(EFFNET, small, measure_host=False, search_order=False, runtime="cards")
    assert "Two200" in a2.boards and a2.target["board"] == "Two200" and a2.target["custom"]
    assert not a2.target["fits"] and "Two200" not in a2.fits_on and "contiguous" in a2.target["note"]
    assert c2.target["fits"] and "Two200" in c2.fits_on
    assert a2.to_json()["tflm_arena_bytes"] == want


def test_a_float_model_has_no_tflm_figure_and_says_so(tmp_path):
    import keras

    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    p = tmp_path / "m.keras"
    m.save(p)
    a = analyze(p, measure_host=False)
    assert a.tflm_arena_bytes is None and a.runtime == "cards" and "TFLM runs .tflite" in a.runtime_note


# -- custom boards ----------------------------------------------------------------------------
def test_board_file(tmp_path):
    f = tmp_path / "myboard.yaml"
    f.write_text("core: cortex-m4\nmhz: 80\nflash: 1 MiB\nram:\n  SRAM1: 96 KiB\n  SRAM2: 32K\n")
    b = boards.load_board_file(f)
    assert b.name == "myboard" and b.core == "cortex-m4" and b.mhz == 80 and b.flash_bytes == 1024 * KiB
    assert [(r.name, r.bytes) for r in b.ram] == [("SRAM1", 96 * KiB), ("SRAM2", 32 * KiB)] and b.custom
    f.write_text("name: X\ncore: m7\nmhz: 400\nram: [{name: AXI, size: 512 KiB}]\n")
    b = boards.load_board_file(f)
    assert b.name == "X" and b.core == "cortex-m7" and b.flash_bytes is None and b.largest_region.name == "AXI"


@pytest.mark.parametrize("text, match", [
    ("core: cortex-m4\nmhz: 80\n", "missing key 'ram'"),
    ("core: cortex-m4\nmhz: 80\nram: {A: 1KiB}\nclock: 3\n", "unknown key 'clock'"),
    ("core: cortex-m0\nmhz: 80\nram: {A: 1KiB}\n", "not a latency family"),
    ("core: cortex-m4\nmhz: fast\nram: {A: 1KiB}\n", "mhz"),
    ("core: cortex-m4\nmhz: 80\nram: {A: lots}\n", "ram region A: expected a size"),
    ("core: cortex-m4\nmhz: 80\nram: {}\n", "at least one RAM region"),
    ("core: cortex-m4\nmhz: 80\nflash: -1\nram: {A: 1KiB}\n", "out of range"),
    ("- just\n- a list\n", "expected a mapping"),
    ("core: [unclosed\n", "not valid YAML"),
])
def test_bad_board_file_is_one_error(tmp_path, text, match):
    f = tmp_path / "b.yaml"
    f.write_text(text)
    with pytest.raises(McuzooError, match=match):
        boards.load_board_file(f)


def test_sizes_and_regions():
    assert boards.parse_size("512 KiB") == boards.parse_size("512K") == boards.parse_size("512kb") == 512 * KiB
    assert boards.parse_size("1.5MiB") == 1536 * KiB and boards.parse_size(4096) == 4096
    assert [r.name for r in boards.parse_regions("256KiB")] == ["RAM"]
    with pytest.raises(McuzooError, match="named twice"):
        boards.parse_regions("A=1K,A=2K")
    with pytest.raises(McuzooError, match="REGION=SIZE"):
        boards.parse_regions("A=1K,2K")


def test_unknown_board_says_how_to_add_one():
    with pytest.raises(McuzooError, match="unknown board 'esp32'.*--board-file BOARD.yaml.*--ram"):
        boards.find_board("esp32")


# -- CLI and config ---------------------------------------------------------------------------
def _json(capsys, argv) -> dict:
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_json_runtime_and_custom_boards(capsys, tmp_path):
    base = ["analyze", str(EFFNET), "--json", "--no-host-latency"]
    d = _json(capsys, base)
    assert d["tflm_arena_bytes"] == tflm.tflm_arena_bytes(EFFNET) and d["runtime"] == "tflm"
    assert d["boards"]["STM32H747"]["ram_needed_bytes"] == d["tflm_arena_bytes"]
    assert d["tflm_arena"]["planned_bytes"] == d["activation_baseline_bytes"]
    d = _json(capsys, base + ["--runtime", "cards"])
    assert d["runtime"] == "cards" and d["boards"]["STM32H747"]["ram_needed_bytes"] == d["activation_bytes"]
    d = _json(capsys, base + ["--ram", "A=200KiB,B=200KiB", "--core", "cortex-m7", "--mhz", "400", "--target", "Mine"])
    assert d["target"]["board"] == "Mine" and not d["target"]["fits"] and d["target"]["ram_region"] == "A"
    f = tmp_path / "big.yaml"
    f.write_text("name: Big\ncore: cortex-m33\nmhz: 160\nflash: 4MiB\nram: {SRAM: 1MiB}\n")
    d = _json(capsys, base + ["--board-file", str(f)])
    assert d["target"]["board"] == "Big" and d["target"]["fits"] and "Big" in d["fits_on"]


def test_cli_human_output_labels_both_figures(capsys):
    assert cli.main(["analyze", str(EFFNET), "--no-host-latency", "--target", "STM32H747"]) == 0
    out = capsys.readouterr().out
    kib = f"{tflm.tflm_arena_bytes(EFFNET) / 1024:,.2f} KiB"
    assert f"TFLM tensor arena (tflm_arena_bytes): {kib}" in out
    assert "activation RAM (cards' convention: activations, input and output inside)" in out
    assert "runtime tflm" in out and "AXI SRAM" in out and "in AXI SRAM" in out


@pytest.mark.parametrize("argv, match", [
    (["--runtime", "xnnpack"], "unknown runtime 'xnnpack'"),
    (["--target", "esp32"], "unknown board 'esp32'"),
    (["--ram", "A=1MiB"], "needs --ram, --core and --mhz"),
    (["--ram", "A=1MiB", "--core", "cortex-m7", "--mhz", "0"], "out of range"),
    (["--board-file", "nonexistent.yaml"], "cannot read board file"),
    (["--board-file", "x.yaml", "--ram", "A=1K"], "drop --ram"),
])
def test_cli_errors_are_one_line(capsys, argv, match):
    assert cli.main(["analyze", str(EFFNET), "--no-host-latency", *argv]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("mcuzoo: error:") and "\n" not in err and match in err


def test_config_key_analysis_runtime():
    assert load_config(None, []).analysis.runtime == "tflm"
    assert load_config(None, ["analysis.runtime=cards"]).analysis.runtime == "cards"
    with pytest.raises(ConfigError, match="runtime"):
        load_config(None, ["analysis.runtime=xnnpack"])
