"""mcuzoo export: the TFLM firmware export, its arena size, operators and the offline memory plan.

Checked against the real TFLM interpreter of the ``tflite-micro`` package and, where a C++ compiler is
installed, by compiling the generated sources.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from mcuzoo import rundir
from mcuzoo.cli import main
from mcuzoo.export import (EXPORT_FILES, _method, export_model, offline_offsets, publish,
                           reorder_operators)


# -- models ---------------------------------------------------------------------------------------
def _int8_tflite(model, shape, seed=0) -> bytes:
    """Full-int8 .tflite (int8 input and output: the graph is the model's own layers, nothing around them)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.normal(size=(1, *shape)).astype("float32")] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """8x8x16 -> conv 6 -> conv 16 -> conv 16, in the converter's own order. TFLM's greedy plan (largest first)
    puts the 384-byte tensor above both 1 KiB tensors it meets (2432 B); the tensors of this chain fit in
    2048 B, the largest live set (the last convolution's input and output)."""
    import keras

    inp = keras.Input((8, 8, 16))
    x = keras.layers.Conv2D(6, 1, activation="relu")(inp)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.Conv2D(16, 1)(x)
    path = tmp_path_factory.mktemp("chain") / "chain.tflite"
    path.write_bytes(_int8_tflite(keras.Model(inp, x), (8, 8, 16)))
    return path


@pytest.fixture(scope="module")
def branch(tmp_path_factory):
    """Two branches x -> big (4 KiB) -> small (256 B), concatenated, stored with both big convolutions first (as
    another toolchain may order them): both big tensors are live together. Running one branch to its end first
    needs about half."""
    import keras

    from mcuzoo.analysis.graph import load_graph

    inp = keras.Input((8, 8, 8))
    a = keras.layers.Conv2D(64, 1, activation="relu", name="a_big")(inp)
    b = keras.layers.Conv2D(64, 1, activation="relu", name="b_big")(inp)
    a = keras.layers.Conv2D(4, 1, name="a_small")(a)
    b = keras.layers.Conv2D(4, 1, name="b_small")(b)
    model = keras.Model(inp, keras.layers.Concatenate()([a, b]))
    d = tmp_path_factory.mktemp("branch")
    (d / "own_order.tflite").write_bytes(_int8_tflite(model, (8, 8, 8)))
    names = [op.name for op in load_graph(d / "own_order.tflite").ops]
    order = [names.index(n) for n in ("a_big", "b_big", "a_small", "b_small")]
    order += [i for i in range(len(names)) if i not in order]
    path = d / "branch.tflite"
    path.write_bytes(reorder_operators((d / "own_order.tflite").read_bytes(), order))
    assert [op.name for op in load_graph(path).ops][:4] == ["a_big", "b_big", "a_small", "b_small"]
    return path


# -- TFLM ------------------------------------------------------------------------------------------
def _tflm(data: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter(bytes(data), [], arena)


def tflm_output(data: bytes, arena: int, x: np.ndarray) -> np.ndarray:
    it = _tflm(data, arena)
    it.set_input(x, 0)
    it.invoke()
    return it.get_output(0)


_RUN = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter(open(sys.argv[1], "rb").read(), [], int(sys.argv[2]))
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
it.invoke()
"""


def tflm_runs(data: bytes, arena: int, tmp_path) -> bool:
    """TFLM allocates and invokes the model in ``arena`` bytes. In a child process: with an arena too small for
    it, TFLM's Python interpreter can crash rather than report the failure."""
    import sys

    path = tmp_path / f".probe_{arena}.tflite"
    path.write_bytes(data)
    rc = subprocess.run([sys.executable, "-c", _RUN, str(path), str(arena)], capture_output=True).returncode
    path.unlink()
    return rc == 0


def settings(out) -> dict:
    """The ``constexpr int`` values of model_settings.h."""
    text = (out / "model_settings.h").read_text()
    return {k: int(v) for k, v in re.findall(r"constexpr int (k\w+) = (-?\d+);", text)}


def _random_input(data: bytes, seed=1) -> np.ndarray:
    d = _tflm(data, 1 << 20).get_input_details(0)
    return np.random.default_rng(seed).integers(-128, 128, size=d["shape"]).astype(d["dtype"])


# -- the files ------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler")
def test_model_data_cc_compiles_to_the_same_bytes(chain, tmp_path):
    src = tmp_path / "m" / "chain\nint oops = ;\\.tflite"  # a file name cannot break out of a comment
    src.parent.mkdir()
    shutil.copyfile(chain, src)
    names = [f"c{i}" for i in range(1024)]  # the chain's output has 1024 values
    names[:4] = ['say "hi"', "back\\slash", "gänseblümchen ??=", "tab\there"]
    info = rundir.ModelInfo(class_names=names, input_shape=(8, 8, 16), rescale=1 / 127.5, offset=-1.0,
                            interpolation="bilinear\nint oops = ;\\")  # nor a string of model_info.json
    (src.parent / rundir.MODEL_INFO).write_text(json.dumps(info.to_json()))
    out = tmp_path / "export"
    res = export_model(src, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    (tmp_path / "main.cc").write_text(r"""
#include <cstdint>
#include <cstdio>
#include "model_data.h"
#include "model_settings.h"
int main(int argc, char** argv) {
  if (reinterpret_cast<std::uintptr_t>(g_model_data) % 16 != 0) return 3;
  std::FILE* f = std::fopen(argv[1], "wb");
  std::fwrite(g_model_data, 1, g_model_data_size, f);
  std::fclose(f);
  f = std::fopen(argv[2], "wb");
  for (int i = 0; i < kNumClasses; ++i) std::fprintf(f, "%s\n", kClassNames[i]);
  std::fclose(f);
  std::printf("%d %d %d %d\n", kTensorArenaSize, kInputSize, kOutputSize, kInputDims[3]);
  return 0;
}
""")
    cxx = shutil.which("g++") or shutil.which("c++")
    subprocess.run([cxx, "-std=c++17", "-O0", "-Wall", "-Werror", f"-I{out}", str(out / "model_data.cc"),
                    str(tmp_path / "main.cc"), "-o", str(tmp_path / "prog")], check=True, capture_output=True)
    run = subprocess.run([str(tmp_path / "prog"), str(tmp_path / "back.tflite"), str(tmp_path / "names.txt")],
                         check=True, capture_output=True, text=True)
    assert (tmp_path / "back.tflite").read_bytes() == chain.read_bytes()  # byte for byte
    assert (tmp_path / "names.txt").read_text(encoding="utf-8").split("\n")[:-1] == names
    arena, n_in, n_out, channels = map(int, run.stdout.split())
    assert arena == res.tensor_arena_size and arena % 16 == 0 and arena >= res.tflm_arena_bytes
    assert (n_in, n_out, channels) == (1024, 1024, 16)
    assert (out / "model.tflite").read_bytes() == chain.read_bytes()


def test_tflm_invokes_with_exactly_kTensorArenaSize(chain, tmp_path):
    out = tmp_path / "export"
    export_model(chain, out)
    k = settings(out)["kTensorArenaSize"]
    assert tflm_runs((out / "model.tflite").read_bytes(), k, tmp_path)


def test_op_resolver_method_names():
    assert [_method(n) for n in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                                 "HARD_SWISH", "RELU6", "PADV2", "L2_NORMALIZATION", "RESIZE_NEAREST_NEIGHBOR",
                                 "BATCH_TO_SPACE_ND")] == [
        "AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected", "AddAveragePool2D", "AddMaxPool2D", "AddHardSwish",
        "AddRelu6", "AddPadV2", "AddL2Normalization", "AddResizeNearestNeighbor", "AddBatchToSpaceNd"]


def _resolver_methods(out) -> list[str]:
    text = (out / "op_resolver.h").read_text()
    methods = re.findall(r"resolver\.(Add\w+)\(\)", text)
    n = int(re.search(r"constexpr int kNumOps = (\d+);", text).group(1))
    assert "tflite::MicroMutableOpResolver<kNumOps>" in text and n == len(methods) == len(set(methods))
    return methods


def test_op_resolver_lists_exactly_the_models_ops(branch, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    export_model(branch, tmp_path / "e")
    ops = {o["op_name"] for o in Interpreter(model_path=str(branch))._get_ops_details()}
    assert ops == {"CONV_2D", "CONCATENATION"}
    assert sorted(_resolver_methods(tmp_path / "e")) == ["AddConcatenation", "AddConv2D"]


# -- the offline plan --------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["chain", "branch"])
def test_offline_plan_runs_tflm_in_the_smaller_arena(which, request, tmp_path):
    from mcuzoo.analysis.graph import load_graph

    model = request.getfixturevalue(which)
    plain = export_model(model, tmp_path / "plain")
    planned = export_model(model, tmp_path / "planned", offline_plan=True)
    p = planned.offline_plan
    assert p is not None and p["planned_bytes"] < p["tflm_greedy_bytes"]
    assert p["reordered"] == (which == "branch")
    data = (tmp_path / "planned" / "model.tflite").read_bytes()
    offsets = offline_offsets(data)
    assert offsets is not None and len(offsets) == len(load_graph(tmp_path / "planned" / "model.tflite").tensors)
    assert offline_offsets((tmp_path / "plain" / "model.tflite").read_bytes()) is None
    small = settings(tmp_path / "planned")["kTensorArenaSize"]
    assert small == planned.tensor_arena_size < plain.tensor_arena_size
    assert tflm_runs(data, small, tmp_path)  # TFLM, holding the plan, runs in the smaller arena
    assert not tflm_runs(data, int(small / 1.02), tmp_path)  # and kTensorArenaSize is within 2 % of its minimum
    assert not tflm_runs(model.read_bytes(), small, tmp_path)  # and without it, it does not
    x = _random_input(data)  # the same outputs, bit for bit
    assert np.array_equal(tflm_output(data, 1 << 20, x), tflm_output(model.read_bytes(), 1 << 20, x))
    # tflm_arena_bytes of the exported file reflects the plan
    from mcuzoo.analysis.tflm import tflm_arena_bytes

    assert tflm_arena_bytes(data) == planned.tflm_arena_bytes < tflm_arena_bytes(model.read_bytes())


def test_offline_plan_is_not_written_where_it_saves_nothing(tmp_path):
    import keras

    inp = keras.Input((4, 4, 8))
    model = keras.Model(inp, keras.layers.Conv2D(8, 1)(inp))  # one operator: nothing to plan better
    src = tmp_path / "one.tflite"
    src.write_bytes(_int8_tflite(model, (4, 4, 8)))
    res = export_model(src, tmp_path / "e", offline_plan=True)
    assert res.offline_plan is None and any("not smaller" in n for n in res.notes)
    assert (tmp_path / "e" / "model.tflite").read_bytes() == src.read_bytes()


# -- the stage, zoo add, the CLI ----------------------------------------------------------------------
def test_export_stage_of_a_tiny_run_and_zoo_publish(tmp_path, chain):
    from mcuzoo.config import load_config
    from mcuzoo.pipeline import run

    cfg = load_config(None, ["name=tiny", "dataset.samples_per_class=4", "training.epochs=1", "training.verbose=false",
                             "quantization.calibration_samples=8", "stages=[train,quantize,export]", "export.offline_plan=true",
                             f"output_dir={tmp_path / 'runs'}"])
    run_dir = run(cfg)
    out = run_dir / rundir.EXPORT
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    assert (out / "model.tflite").read_bytes() == (run_dir / rundir.INT8_TFLITE).read_bytes()
    info = rundir.read_model_info(run_dir / rundir.INT8_TFLITE)
    text = (out / "model_settings.h").read_text()
    assert f"constexpr int kNumClasses = {len(info.class_names)};" in text and '"Z"' in text
    assert "using InputType = uint8_t;" in text and "using OutputType = float;" in text
    methods = _resolver_methods(out)
    assert {"AddConv2D", "AddQuantize", "AddDequantize"} <= set(methods)
    assert tflm_runs((out / "model.tflite").read_bytes(), settings(out)["kTensorArenaSize"], tmp_path)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".export")]  # no staging left behind
    manifest = json.loads((out / "export.json").read_text())  # export.offline_plan: nothing to gain on this model
    plan = manifest["offline_plan"]
    assert (plan is None and "not smaller" in manifest["notes"][0]) or plan["planned_bytes"] < plan["tflm_greedy_bytes"]

    dest = tmp_path / "zoo" / "m"
    dest.mkdir(parents=True)
    shutil.copyfile(run_dir / rundir.INT8_TFLITE, dest / rundir.INT8_TFLITE)
    assert publish(run_dir, dest) == dest / rundir.EXPORT
    assert (dest / rundir.EXPORT / "model_data.cc").read_bytes() == (out / "model_data.cc").read_bytes()
    # a new model in the zoo folder from a run without an export: the old export is made again from it
    shutil.copyfile(chain, dest / rundir.INT8_TFLITE)
    shutil.rmtree(out)
    publish(run_dir, dest)
    assert (dest / rundir.EXPORT / "model.tflite").read_bytes() == chain.read_bytes()


def test_cli_export(chain, tmp_path, capsys):
    assert main(["export", str(chain), "--out", str(tmp_path / "e"), "--offline-plan", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["offline_plan"]["planned_bytes"] < j["offline_plan"]["tflm_greedy_bytes"]
    assert j["tensor_arena_size"] == settings(tmp_path / "e")["kTensorArenaSize"]
    assert main(["export", str(chain), "--out", str(tmp_path / "e")]) == 0  # an earlier export is replaced
    assert "kTensorArenaSize" in capsys.readouterr().out
    assert offline_offsets((tmp_path / "e" / "model.tflite").read_bytes()) is None


def test_bad_inputs_are_one_line_errors_and_leave_nothing(chain, tmp_path, capsys, monkeypatch):
    from mcuzoo import export as export_mod

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 4 + b"TFL3" + b"\x01" * 40)
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"not a model")
    (tmp_path / "not_empty").mkdir()
    (tmp_path / "not_empty" / "mine.txt").write_text("keep me")
    (tmp_path / "a_file").write_text("x")
    cases = [
        ([str(tmp_path / "missing.tflite")], "not found"),
        ([str(keras_file)], "needs a .tflite"),
        ([str(junk)], "tflite"),
        ([str(tmp_path)], rundir.INT8_TFLITE),  # a folder without a model
        ([str(chain), "--out", str(tmp_path / "not_empty")], "not an mcuzoo export"),
        ([str(chain), "--out", str(tmp_path / "a_file")], "is a file"),
    ]
    for args, words in cases:
        if "--out" not in args:
            args = args + ["--out", str(tmp_path / "out")]
        assert main(["export", *args]) == 1, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("mcuzoo: error:") and "\n" not in err and words in err, (args, err)
    assert (tmp_path / "not_empty" / "mine.txt").read_text() == "keep me"
    # a failure while writing leaves neither a half-written export nor the staging folder
    monkeypatch.setattr(export_mod, "_resolver_h", lambda methods: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        export_model(chain, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_zoo_exports_are_current():
    """Each zoo folder's export/ was made from its model_int8.tflite, with today's kTensorArenaSize."""
    import hashlib

    from conftest import REPO

    from mcuzoo.analysis.tflm import tflm_arena_bytes

    folders = sorted(p.parent for p in REPO.glob("zoo/*/*/model_int8.tflite"))
    for folder in folders:
        fix = f"regenerate it: mcuzoo export {folder.relative_to(REPO)} --out {folder.relative_to(REPO)}/export"
        out = folder / rundir.EXPORT
        assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES), fix
        data = (folder / rundir.INT8_TFLITE).read_bytes()
        assert json.loads((out / "export.json").read_text())["source_sha256"] == hashlib.sha256(data).hexdigest(), fix
        assert settings(out)["kTensorArenaSize"] == -(-tflm_arena_bytes(out / "model.tflite") // 16) * 16, fix
