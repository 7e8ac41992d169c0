"""mcuzoo.analysis: graph reading, memory planners, boards, latency model, CLI."""
from __future__ import annotations

import argparse
import json
import random

import numpy as np
import pytest
from conftest import tiny_float_onnx

from mcuzoo.analysis import analyze, analyze_graph, boards, planner, register_cli
from mcuzoo.analysis.graph import Graph, Op, Tensor, load_graph
from mcuzoo.errors import McuzooError, ModelFileError

B = planner.Buffer


# -- planners on hand-made lifetimes ---------------------------------------------------------
def test_tflm_greedy_reproduces_tflm_medium_example():
    # greedy_memory_planner_test.cc, TestGreedyMedium: (size, first, last) added in this order
    bufs = [B("0", 10, 0, 1), B("1", 20, 1, 2), B("2", 30, 2, 3), B("3", 40, 3, 4), B("4", 50, 0, 1)]
    plan = planner.tflm_greedy(bufs)
    assert plan.offsets == [50, 70, 40, 0, 0]
    assert plan.arena == 90
    planner.check_plan(plan)


def test_tflm_greedy_keeps_offline_offsets_and_plans_the_rest_around_them():
    bufs = [B("a", 100, 0, 1), B("b", 50, 2, 3), B("c", 20, 1, 2)]
    plan = planner.tflm_greedy(bufs, [-1, 0, 100])  # b and c fixed by an offline plan
    assert plan.offsets == [0, 0, 100] and plan.arena == 120  # a fits in the gap below c
    plan = planner.tflm_greedy(bufs, [-1, 0, 50])
    assert plan.offsets == [70, 0, 50] and plan.arena == 170  # the gap below c is too small: a goes above it
    planner.check_plan(plan)
    assert planner.tflm_greedy(bufs, [-1, -1, -1]).offsets == planner.tflm_greedy(bufs).offsets


def test_tflm_greedy_small_cases():
    basics = planner.tflm_greedy([B("a", 10, 0, 1), B("b", 20, 2, 3)])
    assert basics.offsets == [0, 0] and basics.arena == 20
    overlap = planner.tflm_greedy([B("a", 100, 0, 1), B("b", 50, 2, 3), B("c", 20, 1, 2)])
    assert overlap.arena == 120  # TestOverlapCase
    assert planner.tflm_greedy([]).arena == 0


def test_ours_beats_tflm_on_hand_computed_case():
    # By hand: TFLM places the two 60s at 0 (t2 and t4), then b1 (t3-4) above the t4 one at 60,
    # then b0 (t2-3) above both at 110 -> 160. Live bytes never exceed 110 (t2: 50+60, t4: 50+60),
    # and 110 is reachable: b3@0, b0@60 (t2); b1@0, b2@50 (t4).
    bufs = [B("b0", 50, 2, 3), B("b1", 50, 3, 4), B("b2", 60, 4, 4), B("b3", 60, 2, 2)]
    tflm = planner.tflm_greedy(bufs)
    assert tflm.offsets == [110, 60, 0, 0] and tflm.arena == 160
    ours = planner.plan_offsets(bufs)
    planner.check_plan(ours)
    assert planner.lower_bound(bufs) == 110
    assert ours.arena == 110


def _random_buffers(rng: random.Random, n: int) -> list:
    out = []
    for i in range(n):
        f = rng.randrange(0, 30)
        last = min(29, f + (rng.choice((0, 1, 1, 2)) if rng.random() > 0.15 else rng.randint(3, 15)))
        out.append(B(f"b{i}", 16 * rng.randint(1, 400), f, last))
    return out


def test_planners_are_valid_and_bounded_on_random_workloads():
    rng = random.Random(7)
    better = 0
    for _ in range(60):
        bufs = _random_buffers(rng, rng.randint(5, 60))
        lb = planner.lower_bound(bufs)
        tflm = planner.tflm_greedy(bufs)
        ours = planner.plan_offsets(bufs, time_budget_s=0.05)
        planner.check_plan(tflm)
        planner.check_plan(ours)  # no two time-overlapping buffers overlap in memory
        assert lb <= ours.arena <= tflm.arena
        better += ours.arena < tflm.arena
    assert better > 0


def test_check_plan_catches_overlap():
    plan = planner.Plan([B("a", 10, 0, 1), B("b", 10, 1, 2)], [0, 5])
    with pytest.raises(AssertionError):
        planner.check_plan(plan)


def _t(i: int, kib: int) -> Tensor:
    return Tensor(i, f"t{i}", (1, kib * 1024), "int8", kib * 1024)


def test_lifetimes_put_input_and_output_in_the_arena():
    g = planner.example_branching_graph()
    bufs = {b.tensors[0]: b for b in planner.lifetimes(g)}
    assert (bufs[0].first, bufs[0].last) == (0, 1)  # input: from the start to its last reader
    assert (bufs[5].first, bufs[5].last) == (4, 4)  # output: until the end
    assert (bufs[1].first, bufs[1].last) == (0, 2)
    assert all(b.size % planner.ALIGNMENT == 0 for b in bufs.values())


def test_order_search_finds_a_better_order_on_a_branching_graph():
    g = planner.example_branching_graph()
    model_peak = planner.lower_bound(planner.lifetimes(g))
    assert model_peak == (8 + 64 + 64) * 1024  # both big tensors live at op 1
    (peak, order), *_ = planner.search_orders(g)
    assert order == [0, 2, 1, 3, 4]
    assert peak == (8 + 4 + 64) * 1024  # x, small_a and big_b
    a = analyze_graph(g)
    assert a.reordered and a.execution_order == order
    assert a.activation_bytes == a.activation_lower_bound_bytes == peak
    assert a.activation_baseline_bytes == planner.tflm_greedy(planner.lifetimes(g)).arena > a.activation_bytes
    assert a.activation_lower_bound_best_order_bytes == peak
    planner.check_plan(a.plan)


def test_reshape_aliases_its_input():
    tensors = {0: _t(0, 1), 1: _t(1, 4), 2: _t(2, 4), 3: _t(3, 1)}
    ops = [
        Op(0, "conv", "CONV_2D", "conv", [0], [1]),
        Op(1, "reshape", "RESHAPE", "reshape", [1], [2]),
        Op(2, "fc", "FULLY_CONNECTED", "fully_connected", [2], [3]),
    ]
    g = Graph("alias", "tflite", tensors, ops, [0], [3])
    plain = planner.lifetimes(g)
    aliased = planner.lifetimes(g, alias_reshapes=True)
    assert len(aliased) == len(plain) - 1
    assert planner.lower_bound(aliased) < planner.lower_bound(plain)


# -- real models --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """st_mnist_v1 (28x28x1, 36 classes) with non-zero biases, as .keras and int8 .tflite."""
    from mcuzoo.models import build_model
    from mcuzoo.quantization.calibration import Calibration
    from mcuzoo.quantization.tflite import quantize_tflite

    model = build_model("st_mnist_v1", (28, 28, 1), 36)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for w in layer.weights:
            if w.path.endswith("bias"):  # zero biases would be dropped by the converter
                w.assign(rng.normal(0, 0.1, size=w.shape).astype("float32"))
    d = tmp_path_factory.mktemp("mnist")
    model.save(d / "mnist.keras")
    images = rng.integers(0, 256, size=(8, 28, 28, 1), dtype=np.uint8)
    quantize_tflite(model, Calibration(images, 1 / 127.5, -1.0), d / "mnist.tflite")
    return model, d / "mnist.keras", d / "mnist.tflite"


def _bn_params(model) -> int:
    import keras

    return sum(l.count_params() for l in model.layers if isinstance(l, keras.layers.BatchNormalization))


def test_tflite_params_and_macs_match_the_keras_model(mnist):
    from mcuzoo.models import total_macs

    model, _, tfl = mnist
    a = analyze(tfl, measure_host=False)
    assert a.format == "tflite"
    assert a.macs == total_macs(model)
    # BatchNormalization is folded into the convolutions by the converter
    assert a.params == model.count_params() - _bn_params(model)
    assert sum(l["macs"] for l in a.layers) == a.macs
    kinds = [l["kind"] for l in a.layers]
    assert kinds.count("conv") == 3 and kinds.count("depthwise") == 2 and kinds.count("fully_connected") == 1


def test_tflite_weights_flash_matches_constant_buffers(mnist):
    import keras

    model, _, tfl = mnist
    a = analyze(tfl, measure_host=False)
    expected = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            kernel = layer.weights[0]
            expected += int(np.prod(kernel.shape))  # int8 weights
            expected += 4 * int(np.prod(layer.weights[1].shape))  # int32 biases
    assert abs(a.weights_bytes - expected) / expected < 0.03
    assert a.weights_bytes < tfl.stat().st_size
    # 8 bytes per channel of the weights (per-channel) and of each activation
    assert a.quant_params_bytes > 8 * (16 + 16 + 32 + 32 + 64)
    assert a.flash_bytes == a.weights_bytes + a.quant_params_bytes


def test_tflite_memory_plan_and_json(mnist, tmp_path):
    _, _, tfl = mnist
    png = tmp_path / "timeline.png"
    a = analyze(tfl, target="STM32H747", plot=png, host_runs=3)
    assert a.activation_lower_bound_bytes <= a.activation_bytes <= a.activation_baseline_bytes
    # the input (uint8 28x28) and the float32 output are in the arena
    assert a.input_bytes == 28 * 28 and a.output_bytes == 36 * 4
    assert any(0 in row["tensors"] for row in a.memory_plan)
    planner.check_plan(a.plan)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads(json.dumps(a.to_json()))
    for key in ("params", "macs", "weights_bytes", "activation_bytes", "activation_lower_bound_bytes",
                "activation_baseline_bytes", "layers", "boards", "fits_on", "host_latency_ms", "latency_model"):
        assert key in d
    assert d["io_in_arena"] is True
    assert d["target"]["board"] == "STM32H747" and d["target"]["fits"] is True
    assert "STM32H747" in d["fits_on"] and set(d["fits_on"]) <= set(d["boards"])
    fit = d["boards"]["STM32H747"]
    assert {"fits", "ram_headroom_bytes", "flash_headroom_bytes", "latency_ms_estimate"} <= set(fit)
    assert d["host_latency_ms"] is not None and d["host_latency_ms"] > 0
    assert d["host"]["cores"].endswith("cores") and d["host"]["cpu"] and d["host"]["system"]
    layer = d["layers"][1]
    assert {"name", "op", "output_shape", "params", "macs", "weight_bytes", "activation_bytes"} <= set(layer)
    assert layer["output_shape"] == [14, 14, 16]
    assert len(d["latency_model"]["calibration"]) == len(boards.CALIBRATION)


def test_keras_analysis(mnist):
    model, keras_path, _ = mnist
    a = analyze(keras_path)
    assert a.format == "keras" and a.host_latency_ms is None
    assert a.params == model.count_params() == 10372
    from mcuzoo.models import total_macs

    assert a.macs == total_macs(model)
    assert a.input_bytes == 28 * 28 * 4  # float32
    assert a.activation_lower_bound_bytes <= a.activation_bytes <= a.activation_baseline_bytes


def test_calibration_features_are_current(mnist):
    """The stored features of the ST MNIST card row equal what the graph code computes now (else: --refit)."""
    _, _, tfl = mnist
    feats = boards.latency_features(load_graph(tfl))
    row = next(r for r in boards.CALIBRATION if r["model"] == "st_mnist_v1" and r["board"] == "STM32H747")
    assert feats == pytest.approx(row["features"])


# -- ONNX -----------------------------------------------------------------------------------
def _onnx_models(d):
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    # float: Conv 3x3 (3->4, pad 1) -> Relu -> GAP -> Flatten -> Gemm(4->3) -> Softmax; batch dynamic
    m = tiny_float_onnx(rng, "N")
    onnx.save(m, d / "float.onnx")

    def qdq(int4: bool):
        wq = rng.integers(-7, 8, (4, 3, 3, 3)).astype(np.int8)
        wdt = TP.INT4 if int4 else TP.INT8
        inits = [
            h.make_tensor("Wq", wdt, wq.shape, wq.flatten().tolist()),
            nh.from_array(np.full(4, 0.02, np.float32), "Ws"),
            h.make_tensor("Wz", wdt, [4], [0] * 4),
            nh.from_array(rng.integers(-100, 100, 4).astype(np.int32), "Bq"),
            nh.from_array(np.full(4, 0.0002, np.float32), "Bs"),
            nh.from_array(np.array(0.01, np.float32), "s"),
            nh.from_array(np.array(0, np.int8), "z"),
            nh.from_array(rng.integers(-127, 128, (4, 3)).astype(np.int8), "Gq"),
            nh.from_array(np.array(0.01, np.float32), "Gs"),
        ]
        nodes = [
            h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
            h.make_node("DequantizeLinear", ["Wq", "Ws", "Wz"], ["W"], axis=0),
            h.make_node("DequantizeLinear", ["Bq", "Bs"], ["B"], axis=0),
            h.make_node("Conv", ["xd", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
            h.make_node("Relu", ["c"], ["r"]),
            h.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
            h.make_node("DequantizeLinear", ["rq", "s", "z"], ["rd"]),
            h.make_node("GlobalAveragePool", ["rd"], ["p"]),
            h.make_node("QuantizeLinear", ["p", "s", "z"], ["pq"]),
            h.make_node("DequantizeLinear", ["pq", "s", "z"], ["pd"]),
            h.make_node("Flatten", ["pd"], ["f"]),
            h.make_node("DequantizeLinear", ["Gq", "Gs"], ["G"]),
            h.make_node("Gemm", ["f", "G"], ["g"]),
            h.make_node("QuantizeLinear", ["g", "s", "z"], ["gq"]),
            h.make_node("DequantizeLinear", ["gq", "s", "z"], ["y"]),
        ]
        g = h.make_graph(nodes, "tinyq", [h.make_tensor_value_info("x", TP.FLOAT, [1, 3, 8, 8])],
                         [h.make_tensor_value_info("y", TP.FLOAT, [1, 3])], inits)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
        m.ir_version = 10
        name = "w4.onnx" if int4 else "qdq.onnx"
        onnx.save(m, d / name)

    qdq(False)
    qdq(True)
    return d / "float.onnx", d / "qdq.onnx", d / "w4.onnx"


def test_onnx_float_qdq_and_int4(tmp_path):
    f, q, w4 = _onnx_models(tmp_path)
    macs = 4 * 3 * 3 * 3 * 8 * 8 + 4 * 3
    fa = analyze(f, host_runs=3)
    assert fa.format == "onnx" and fa.params == 4 * 27 + 4 + 12 and fa.macs == macs
    assert fa.weights_bytes == 4 * (4 * 27 + 4 + 12)
    assert fa.input_bytes == 3 * 8 * 8 * 4  # batch fixed to 1
    assert fa.host_latency_ms is not None and fa.host_runtime == "ONNX Runtime"
    qa = analyze(q, host_runs=3)
    assert qa.macs == macs and qa.params == fa.params
    assert qa.weights_bytes == 108 + 4 * 4 + 12  # int8 weights, int32 bias, int8 fc
    assert qa.quant_params_bytes == 8 * (4 + 1 + 4)  # per-channel conv weights, fc weights, 4 activations
    assert qa.activation_bytes < fa.activation_bytes  # 8-bit activations
    conv = next(l for l in qa.layers if l["op"] == "Conv")
    assert conv["activation_bytes"] == 4 * 8 * 8  # int8 output
    assert not any(l["op"] == "DequantizeLinear" and l["params"] for l in qa.layers)
    wa = analyze(w4, measure_host=False)
    assert wa.weights_bytes == 54 + 16 + 12  # int4 packed two per byte


def test_onnx_unsupported_operators_raise(tmp_path):
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as h

    def save(nodes, name, domains=()):
        g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TP.FLOAT, [1, 4])],
                         [h.make_tensor_value_info("y", TP.FLOAT, [1, 4])])
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), *[h.make_opsetid(d, 1) for d in domains]])
        m.ir_version = 8
        onnx.save(m, tmp_path / name)
        return tmp_path / name

    custom = save([h.make_node("FancyOp", ["x"], ["y"], domain="com.example")], "custom.onnx", ["com.example"])
    with pytest.raises(ModelFileError, match="unsupported operator com.example.FancyOp"):
        analyze(custom, measure_host=False)
    branch = h.make_graph([h.make_node("Identity", ["x"], ["z"])], "b", [], [h.make_tensor_value_info("z", TP.FLOAT, [1, 4])])
    cond = h.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    const = h.make_node("Constant", [], ["c"], value=h.make_tensor("v", TP.BOOL, [], [True]))
    control = save([const, cond], "if.onnx")
    with pytest.raises(ModelFileError, match="unsupported operator If"):
        analyze(control, measure_host=False)


# -- malformed files ------------------------------------------------------------------------------
def test_malformed_files_raise_one_line_model_file_errors(tmp_path, mnist):
    _, keras_path, tfl = mnist
    data = tfl.read_bytes()
    cases = {
        "empty.tflite": b"",
        "half.tflite": data[: len(data) // 2],
        "head.tflite": data[:64],
        "text.tflite": b"hello, this is not a model at all\n" * 4,
        "noident.tflite": data[:4] + b"XXXX" + data[8:],
        "text.onnx": b"definitely not protobuf \xff\xfe" * 8,
        "half.onnx": None,
        "empty.keras": b"",
        "garbage.keras": b"PK\x03\x04 not really a zip",
        "half.keras": keras_path.read_bytes()[:300],
        "model.pb": b"whatever",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is None:
            _onnx_models(tmp_path)
            content = (tmp_path / "qdq.onnx").read_bytes()[:120]
        path.write_bytes(content)
        with pytest.raises(ModelFileError) as e:
            analyze(path, measure_host=False)
        assert "\n" not in str(e.value) and str(path.name) in str(e.value), name
    with pytest.raises(ModelFileError, match="not found"):
        analyze(tmp_path / "missing.tflite")
    with pytest.raises(ModelFileError):
        analyze(tmp_path)  # a folder


def test_tflite_custom_operator_is_unsupported(tmp_path):
    import tensorflow as tf

    from mcuzoo.console import captured_output

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        return tf.math.special.bessel_i0e(x) + 1.0

    with captured_output():
        conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
        conv.allow_custom_ops = True
        flat = conv.convert()
    path = tmp_path / "custom.tflite"
    path.write_bytes(flat)
    with pytest.raises(ModelFileError, match="unsupported operator BesselI0e"):
        analyze(path)


# -- boards and latency model ---------------------------------------------------------------------
def test_board_lookup_and_fit():
    assert boards.find_board("stm32h747i-disco").name == "STM32H747"
    assert boards.find_board("STM32U5").name == "STM32U585"
    assert boards.find_board("h7").name == "STM32H743"
    with pytest.raises(McuzooError, match="unknown board"):
        boards.find_board("esp32")
    f769 = boards.find_board("STM32F769")
    feats = dict.fromkeys(boards.FEATURES, 0.0)
    ok = boards.board_fit(f769, 400 * 1024, 600 * 1024, feats)  # runtime tflm: the whole arena in one region
    assert ok["fits"] and ok["ram_headroom_bytes"] == 512 * 1024 - 400 * 1024 and ok["runtime_ram_bytes"] == 0
    cards = boards.board_fit(f769, 500 * 1024, 600 * 1024, feats, runtime="cards")  # + the runtime's RAM apart
    assert not cards["fits"] and cards["ram_headroom_bytes"] == 12 * 1024 and "runtime" in cards["note"]
    too_big = boards.board_fit(f769, 513 * 1024, 600 * 1024, feats)
    assert not too_big["fits"] and too_big["ram_headroom_bytes"] < 0
    mp1 = boards.board_fit(boards.find_board("mp1"), 10 * 1024 * 1024, 100 * 1024 * 1024, feats)
    assert mp1["fits"] and mp1["flash_headroom_bytes"] is None


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(1)
    truth = {k: v * rng.uniform(0.5, 2.0) for k, v in boards.PRIORS.items()}
    rows = []
    for _ in range(12):
        feats = {k: float(rng.uniform(0, 1e6 if k not in ("layers",) else 200)) for k in boards.FEATURES}
        cycles = sum(truth[k] * feats[k] for k in boards.FEATURES)
        rows.append({"features": feats, "mhz": 400, "measured_ms": cycles / 400e3})
    got = boards.fit_coefficients(rows, "cortex-m7", ridge=0.0)
    for k in boards.FEATURES:
        assert got[k] == pytest.approx(truth[k], rel=1e-4)


def test_stored_coefficients_are_the_fit_of_the_stored_rows():
    fresh = boards.fit_all()
    for fam, coeffs in boards.COEFFICIENTS.items():
        for k, v in coeffs.items():
            assert v == pytest.approx(fresh[fam][k], rel=1e-4, abs=1e-5), (fam, k)
    rows = boards.leave_one_out()
    assert len(rows) == len(boards.CALIBRATION) == len(boards.CARD_ROWS)
    for r in rows:
        assert r["fitted_ms"] > 0
        assert r["loo_ms"] is None or r["loo_ms"] > 0


# -- CLI --------------------------------------------------------------------------------------------
@pytest.fixture
def cli_main(monkeypatch):
    """mcuzoo.cli.main with the analyze verb (added here if cli.py does not wire it yet)."""
    from mcuzoo import cli

    original = cli.build_parser

    def build_parser():
        p = original()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        if "analyze" not in sub.choices:
            register_cli(sub)
        return p

    monkeypatch.setattr(cli, "build_parser", build_parser)
    return cli.main


def test_cli_analyze_json_and_table(cli_main, mnist, capsys):
    _, _, tfl = mnist
    assert cli_main(["analyze", str(tfl), "--json", "--no-host-latency", "--target", "stm32f769"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out)
    assert d["target"]["board"] == "STM32F769" and d["io_in_arena"] is True
    assert cli_main(["analyze", str(tfl), "--no-host-latency"]) == 0
    out = capsys.readouterr().out
    assert "activation arena" in out and "fits on" in out and "conv" in out.lower()


def test_cli_analyze_errors_are_one_line(cli_main, tmp_path, mnist, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert cli_main(["analyze", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mcuzoo: error:") and "\n" not in err and "Traceback" not in err
    _, _, tfl = mnist
    assert cli_main(["analyze", str(tfl), "--target", "atmega328"]) == 1
    err = capsys.readouterr().err.strip()
    assert "unknown board" in err and "\n" not in err
    assert cli_main(["analyze", str(tfl), "--plot", str(tmp_path / "x.jpg")]) == 1
    assert ".png" in capsys.readouterr().err
