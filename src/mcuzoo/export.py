"""The export for firmware: what a TensorFlow Lite Micro (TFLM) project needs to run a model.

:func:`export_model` takes an int8 ``.tflite`` (or a run directory / zoo folder holding
``model_int8.tflite``) and writes a folder:

- ``model_data.cc`` / ``model_data.h``: the .tflite as ``alignas(16) const unsigned char
  g_model_data[]`` with ``const unsigned int g_model_data_size``;
- ``model_settings.h``: input shape, type, scale and zero point, output size, class names, and
  ``constexpr int kTensorArenaSize``: :func:`mcuzoo.analysis.tflm.tflm_arena_bytes` of the
  exported model rounded up to 16;
- ``op_resolver.h``: a ``tflite::MicroMutableOpResolver<N>`` with exactly the model's operators;
- ``model.tflite`` (the bytes ``g_model_data`` holds), ``export.json`` (the same facts for tools)
  and a short ``README.md``.

With ``offline_plan=True``, wherever mcuzoo's memory plan (:mod:`mcuzoo.analysis.planner`: a
better execution order and placement) needs fewer bytes than TFLM's own greedy plan, the plan is
written into the exported .tflite as TFLM's ``OfflineMemoryAllocation`` metadata (int32 words:
format version 0, number of subgraphs, number of offsets, then one arena offset per tensor, -1
for the tensors TFLM plans itself), with the operators in the order the plan assumes. TFLM then
places those tensors where the plan says.

The folder is written beside its final place and renamed into it, so an error never leaves a
half-written export. CLI: ``mcuzoo export MODEL_OR_RUN_DIR --out DIR [--offline-plan]``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import rundir
from .analysis.graph.tflite import OFFLINE_PLAN_METADATA
from .errors import McuzooError, ModelFileError

__all__ = ["ExportResult", "export_model", "register_cli", "op_resolver_methods", "with_offline_plan", "reorder_operators",
           "offline_offsets", "EXPORT_FILES", "MANIFEST"]

ALIGNMENT = 16  # g_model_data alignment and kTensorArenaSize rounding (TFLM's buffer alignment)
MANIFEST = "export.json"
MODEL_COPY = "model.tflite"
EXPORT_FILES = ("model_data.cc", "model_data.h", "model_settings.h", "op_resolver.h", MODEL_COPY, MANIFEST,
                "README.md")

# TFLM's MicroMutableOpResolver method names that do not follow the rule CONV_2D -> AddConv2D
# (the rule of TFLM's own generate_micro_mutable_op_resolver_from_model.py)
_METHOD_EXCEPTIONS = {
    "PADV2": "AddPadV2",
    "CUMSUM": "AddCumSum",
    "BATCH_MATMUL": "AddBatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "SELECT_V2": "AddSelectV2",
    "CONV_3D": "AddConv3D",
}

# flatbuffer TensorType -> (name, C type)
_TYPES = {0: ("float32", "float"), 2: ("int32", "int32_t"), 3: ("uint8", "uint8_t"), 4: ("int64", "int64_t"),
          7: ("int16", "int16_t"), 9: ("int8", "int8_t"), 1: ("float16", "uint16_t")}


@dataclass
class ExportResult:
    """What :func:`export_model` wrote; :meth:`to_json` is ``export.json``."""

    out_dir: Path
    source: Path
    model_bytes: int
    sha256: str  # of the exported model (g_model_data)
    source_sha256: str  # of the .tflite it was made from
    tensor_arena_size: int  # kTensorArenaSize
    tflm_arena_bytes: int
    operators: list[str]  # MicroMutableOpResolver methods, e.g. AddConv2D
    input: dict
    output: dict
    class_names: list[str] | None
    offline_plan: dict | None = None  # what --offline-plan wrote, None when it wrote nothing
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=lambda: list(EXPORT_FILES))

    def to_json(self) -> dict:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["source"] = str(self.source)
        return d


# -- reading the model ---------------------------------------------------------------------------
def _find_tflite(model_or_run_dir) -> Path:
    p = Path(model_or_run_dir)
    if p.is_dir():
        m = p / rundir.INT8_TFLITE
        if not m.is_file():
            raise ModelFileError(f"{p} has no {rundir.INT8_TFLITE}: export needs an int8 .tflite (a run directory "
                                 f"after its quantize stage, a zoo folder, or a .tflite file)")
        return m
    if not p.exists():
        raise ModelFileError(f"model not found: {p}")
    if p.suffix.lower() != ".tflite":
        raise ModelFileError(f"{p}: export needs a .tflite model (TFLM runs TensorFlow Lite flatbuffers); "
                             f"make one with mcuzoo quantize")
    return p


def _schema():
    from ai_edge_litert import schema_py_generated as fb

    return fb


def _read_model(data: bytes):
    fb = _schema()
    try:
        return fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # noqa: BLE001 - load_graph has checked it already; belt and braces
        raise ModelFileError(f"cannot read the flatbuffer: {type(e).__name__}") from None


def _builtin_names() -> dict[int, str]:
    fb = _schema()
    return {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def op_resolver_methods(model) -> list[str]:
    """The MicroMutableOpResolver ``AddXxx`` methods of the operators ``model`` (a ModelT) uses, sorted."""
    names = _builtin_names()
    used = set()
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            name = names.get(builtin, str(builtin))
            if name == "CUSTOM":
                custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
                raise ModelFileError(f"custom operator {custom}: TFLM needs its own registration, which mcuzoo "
                                     f"cannot write")
            used.add(name)
    return sorted(_method(n) for n in used)


def _method(op: str) -> str:
    if op in _METHOD_EXCEPTIONS:
        return _METHOD_EXCEPTIONS[op]
    parts = [p for p in re.split("[_-]", op) if p]
    return "Add" + "".join(p[0].upper() + p[1:].lower() if p[0].isalpha() else p.upper() for p in parts)


def _tensor_info(model, index: int) -> dict:
    t = model.subgraphs[0].tensors[index]
    dtype, ctype = _TYPES.get(int(t.type), (f"type{int(t.type)}", "uint8_t"))
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
    zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    shape = [int(s) for s in (t.shape if t.shape is not None else [])]
    elements = 1
    for s in shape:
        elements *= max(s, 1)
    return {"shape": shape, "dtype": dtype, "c_type": ctype, "scale": scale, "zero_point": zp, "elements": elements}


# -- the offline memory plan ---------------------------------------------------------------------
def offline_offsets(data: bytes) -> list[int] | None:
    """The tensor offsets of a .tflite's ``OfflineMemoryAllocation`` metadata, None without one."""
    from .analysis.graph.tflite import offline_memory_plan

    return offline_memory_plan(data)


def _pack(model) -> bytes:
    """Serialise a ModelT with every buffer's data 16-byte aligned (as TFLite's converter writes them)."""
    import flatbuffers
    import numpy as np

    fb = _schema()

    class AlignedBuffer(fb.BufferT):  # type: ignore[name-defined]  # the schema module is generated
        def Pack(self, builder):  # noqa: N802 - flatbuffers' name
            data = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), ALIGNMENT)
                builder.head -= len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                builder.vectorNumElems = len(raw)
                data = builder.EndVector()
            fb.BufferStart(builder)
            if data is not None:
                fb.BufferAddData(builder, data)
            fb.BufferAddOffset(builder, self.offset)
            fb.BufferAddSize(builder, self.size)
            return fb.BufferEnd(builder)

    for b in model.buffers or []:
        b.__class__ = AlignedBuffer
    size = sum(len(b.data) for b in model.buffers or [] if b.data is not None)
    builder = flatbuffers.Builder(size + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _reordered(data: bytes, order: list[int]):
    model = _read_model(data)
    if len(model.subgraphs) != 1:
        raise ModelFileError(f"--offline-plan handles one subgraph; this model has {len(model.subgraphs)}")
    sg = model.subgraphs[0]
    if sorted(order) != list(range(len(sg.operators))):
        raise ValueError("order must list every operator once")
    sg.operators = [sg.operators[i] for i in order]
    return model


def reorder_operators(data: bytes, order: list[int]) -> bytes:
    """``data`` (a one-subgraph .tflite) with its operators stored, and so run, in ``order`` (a valid
    topological order of the graph is the caller's to give)."""
    return _pack(_reordered(data, order))


def with_offline_plan(data: bytes, order: list[int], offsets: list[int]) -> bytes:
    """``data`` (a one-subgraph .tflite) with its operators run in ``order`` and ``offsets`` (one per tensor,
    -1 for TFLM to plan) as ``OfflineMemoryAllocation`` metadata; an older offline plan is replaced."""
    import numpy as np

    fb = _schema()
    model = _reordered(data, order)
    if len(offsets) != len(model.subgraphs[0].tensors):
        raise ValueError("offsets must hold one entry per tensor")
    words = np.array([0, 1, len(offsets), *offsets], dtype="<i4")
    buf = fb.BufferT()
    buf.data = np.frombuffer(words.tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    meta = fb.MetadataT()
    meta.name = OFFLINE_PLAN_METADATA
    meta.buffer = len(model.buffers) - 1
    kept = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name)
            != OFFLINE_PLAN_METADATA]
    model.metadata = kept + [meta]
    return _pack(model)


def _check_offline_plan(path: Path, offsets: list[int], groups: dict[int, int]) -> None:
    """The plan holds under TFLM's own lifetimes of the rewritten model: no two planned tensors live at the same
    time share bytes, unless mcuzoo's plan put them in one buffer on purpose (a reshape aliasing its input)."""
    from .analysis import planner
    from .analysis.graph import load_graph

    g = load_graph(path)
    live = {b.tensors[0]: b for b in planner.lifetimes(g)}
    planned = [t for t in live if offsets[t] >= 0]
    for i, a in enumerate(planned):
        for b in planned[i + 1 :]:
            if groups.get(a) is not None and groups.get(a) == groups.get(b):
                continue
            if live[a].overlaps(live[b]):
                a0, a1 = offsets[a], offsets[a] + live[a].size
                b0, b1 = offsets[b], offsets[b] + live[b].size
                if not (a1 <= b0 or b1 <= a0):
                    raise McuzooError(f"internal check: the offline plan overlaps tensors {a} and {b}")


def _offline_plan(src: Path, data: bytes, work: Path) -> tuple[bytes, dict | None, str | None]:
    """(model bytes, what was planned, note). The plan is written only where it beats TFLM's greedy plan."""
    from .analysis import analyze_graph
    from .analysis.graph import load_graph

    a = analyze_graph(load_graph(src))
    ours, greedy = int(a.activation_bytes), int(a.activation_baseline_bytes)
    if ours >= greedy:
        return data, None, (f"--offline-plan: mcuzoo's plan ({ours:,} B) is not smaller than TFLM's greedy plan "
                            f"({greedy:,} B); the model is exported as it is")
    model = _read_model(data)
    offsets = [-1] * len(model.subgraphs[0].tensors)
    groups: dict[int, int] = {}
    plan: Any = a.plan  # a planner.Plan
    for k, (b, o) in enumerate(zip(plan.buffers, plan.offsets)):
        for t in b.tensors:
            offsets[t] = int(o)
            groups[t] = k
    new = with_offline_plan(data, list(a.execution_order), offsets)
    probe = work / ".offline_check.tflite"
    probe.write_bytes(new)
    try:
        _check_offline_plan(probe, offsets, groups)
    finally:
        probe.unlink(missing_ok=True)
    return new, {"planned_bytes": ours, "tflm_greedy_bytes": greedy, "planner": a.planner,
                 "reordered": bool(a.reordered), "execution_order": list(a.execution_order),
                 "planned_tensors": sum(o >= 0 for o in offsets)}, None


# -- writing -------------------------------------------------------------------------------------
def _c_string(s: str) -> str:
    out = []
    for byte in s.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127 and ch != "?":  # '?' escaped: no trigraphs
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _c_float(v: float) -> str:
    return f"{v!r}f" if v == v and v not in (float("inf"), float("-inf")) else "0.0f"


def _comment(text: str) -> str:
    """``text`` safe inside a // comment: printable ASCII only, no backslash (a file name or a string of
    model_info.json can neither end the comment's line nor splice the next line into it)."""
    return re.sub(r"[^\x20-\x7e]|\\", "?", text).replace("??", "?")


def _model_data_cc(data: bytes, source: str) -> str:
    hexes = [f"0x{b:02x}" for b in data]
    rows = [", ".join(hexes[i : i + 12]) for i in range(0, len(hexes), 12)]
    body = ",\n    ".join(rows)
    return (f"// {_comment(source)} for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.\n"
            f'#include "model_data.h"\n\n'
            f"alignas({ALIGNMENT}) const unsigned char g_model_data[] = {{\n    {body}\n}};\n"
            f"const unsigned int g_model_data_size = {len(data)};\n")


_MODEL_DATA_H = """// The model for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.
// Load it with tflite::GetModel(g_model_data).
#ifndef MCUZOO_MODEL_DATA_H_
#define MCUZOO_MODEL_DATA_H_

extern const unsigned char g_model_data[];  // 16-byte aligned
extern const unsigned int g_model_data_size;

#endif  // MCUZOO_MODEL_DATA_H_
"""


def _settings_h(res: ExportResult, preprocessing: str | None) -> str:
    i, o = res.input, res.output
    dims = i["shape"]
    lines = [
        "// Model settings for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.",
        "#ifndef MCUZOO_MODEL_SETTINGS_H_",
        "#define MCUZOO_MODEL_SETTINGS_H_",
        "",
        "#include <cstdint>",
        "",
        f"// Input: {i['dtype']} {'x'.join(map(str, dims))}; real value = kInputScale * (q - kInputZeroPoint)",
    ]
    if preprocessing:
        lines.append(f"// {_comment(preprocessing)}")
    lines += [
        f"using InputType = {i['c_type']};",
        f'constexpr const char* kInputDtype = "{i["dtype"]}";',
        f"constexpr int kInputRank = {len(dims)};",
        f"constexpr int kInputDims[] = {{{', '.join(map(str, dims)) or '1'}}};",
    ]
    if len(dims) == 4:
        lines += [f"constexpr int kInputHeight = {dims[1]};", f"constexpr int kInputWidth = {dims[2]};",
                  f"constexpr int kInputChannels = {dims[3]};"]
    lines += [
        f"constexpr int kInputSize = {i['elements']};  // elements",
        f"constexpr float kInputScale = {_c_float(i['scale'])};",
        f"constexpr int kInputZeroPoint = {i['zero_point']};",
        "",
        f"// Output: {o['dtype']} {'x'.join(map(str, o['shape']))}",
        f"using OutputType = {o['c_type']};",
        f'constexpr const char* kOutputDtype = "{o["dtype"]}";',
        f"constexpr int kOutputSize = {o['elements']};  // elements",
        f"constexpr float kOutputScale = {_c_float(o['scale'])};",
        f"constexpr int kOutputZeroPoint = {o['zero_point']};",
        "",
    ]
    if res.class_names:
        names = ",\n    ".join(_c_string(c) for c in res.class_names)
        lines += [f"constexpr int kNumClasses = {len(res.class_names)};",
                  f"constexpr const char* kClassNames[kNumClasses] = {{\n    {names}\n}};", ""]
    else:
        lines += ["// No class names: no model_info.json beside the model.", ""]
    plan = " (with the offline memory plan in the model)" if res.offline_plan else ""
    lines += [
        f"// The arena TFLM needs for this model{plan}: tflm_arena_bytes {res.tflm_arena_bytes},",
        f"// rounded up to {ALIGNMENT}: TFLM's reference kernels on a 64-bit build, an upper bound on a 32-bit",
        "// Cortex-M; CMSIS-NN kernels may add scratch buffers (check interpreter.arena_used_bytes()).",
        f"constexpr int kTensorArenaSize = {res.tensor_arena_size};",
        "",
        "#endif  // MCUZOO_MODEL_SETTINGS_H_",
        "",
    ]
    return "\n".join(lines)


def _resolver_h(methods: list[str]) -> str:
    adds = "\n".join(f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;" for m in methods)
    return f"""// The operators of the model for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.
#ifndef MCUZOO_OP_RESOLVER_H_
#define MCUZOO_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int kNumOps = {len(methods)};
using ModelOpResolver = tflite::MicroMutableOpResolver<kNumOps>;

// Registers exactly the operators the model uses.
inline TfLiteStatus RegisterOps(ModelOpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

#endif  // MCUZOO_OP_RESOLVER_H_
"""


def _readme(res: ExportResult) -> str:
    plan = ""
    if res.offline_plan:
        p = res.offline_plan
        plan = (f"\nThe model carries mcuzoo's memory plan as TFLM `OfflineMemoryAllocation` metadata "
                f"({p['planned_bytes']:,} B of planned tensors against {p['tflm_greedy_bytes']:,} B for TFLM's own "
                f"greedy plan{'; operators in the reordered execution order' if p['reordered'] else ''}).\n")
    return f"""# TFLM export of {res.source.name}

Written by `mcuzoo export`. {res.model_bytes:,} bytes of model, {len(res.operators)} operators,
`kTensorArenaSize` = {res.tensor_arena_size:,} bytes.
{plan}
| file | what |
| --- | --- |
| `model_data.cc`, `model_data.h` | the model as `alignas(16) const unsigned char g_model_data[]` and `g_model_data_size` |
| `model_settings.h` | input shape, type, scale and zero point; output size; class names; `kTensorArenaSize` |
| `op_resolver.h` | `ModelOpResolver` (`tflite::MicroMutableOpResolver<kNumOps>`) and `RegisterOps()` with exactly the model's operators |
| `model.tflite` | the bytes of `g_model_data` |
| `export.json` | the same facts for tools |

```c++
#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

alignas(16) static uint8_t tensor_arena[kTensorArenaSize];

ModelOpResolver resolver;
RegisterOps(resolver);
tflite::MicroInterpreter interpreter(tflite::GetModel(g_model_data), resolver, tensor_arena, kTensorArenaSize);
interpreter.AllocateTensors();
// fill interpreter.input(0)->data.{res.input['dtype']} with kInputSize values, interpreter.Invoke(),
// read kOutputSize values from interpreter.output(0)
```
"""


def _preprocessing_note(info, inp: dict) -> str | None:
    if info is None:
        return None
    feed = ("feed the raw pixels (0..255): the input's quantization turns them into"
            if inp["dtype"] == "uint8" else "the float model saw")
    return (f"Preprocessing: resize to the input size ({info.interpolation}, aspect {info.aspect}), then "
            f"{feed} pixel * {info.rescale:g} + {info.offset:g}")


def _install(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out``; an earlier export there is replaced."""
    old = None
    if out.exists():
        if not out.is_dir() or any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise McuzooError(f"{out} exists and is not an mcuzoo export: not overwriting it")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_model(model_or_run_dir, out_dir, *, offline_plan: bool = False) -> ExportResult:
    """Write the TFLM export of a .tflite (or of a run directory's model_int8.tflite) into ``out_dir``.

    The files are written into a staging folder beside ``out_dir`` that replaces it once complete.
    """
    src, data = _checked_source(model_or_run_dir)
    source_sha = hashlib.sha256(data).hexdigest()
    info = rundir.read_model_info(src)
    out = Path(out_dir)
    staging = _staging_folder(out)
    try:
        notes: list[str] = []
        plan = None
        if offline_plan:
            data, plan, note = _offline_plan(src, data, staging)
            if note:
                notes.append(note)
        res = _export_result(src, source_sha, data, info, out, plan, notes)
        _write_files(staging, res, data, info)
        _install(staging, out)
    except OSError as e:
        raise McuzooError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return res


def _checked_source(model_or_run_dir) -> tuple[Path, bytes]:
    """The .tflite to export and its bytes; a malformed model, or one without inputs and outputs, fails."""
    from .analysis.graph import load_graph

    src = _find_tflite(model_or_run_dir)
    load_graph(src)  # a malformed or unsupported model fails here, in one line
    data = src.read_bytes()
    model = _read_model(data)
    sg0 = model.subgraphs[0] if model.subgraphs else None
    if sg0 is None or sg0.inputs is None or not len(sg0.inputs) or sg0.outputs is None or not len(sg0.outputs):
        raise ModelFileError(f"{src} has no subgraph with inputs and outputs")
    return src, data


def _staging_folder(out: Path) -> Path:
    """A new temporary folder beside ``out`` (which must not be a file) to write the export into."""
    if out.exists() and not out.is_dir():
        raise McuzooError(f"--out {out} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    except OSError as e:
        raise McuzooError(f"cannot write {out}: {e.strerror or e}") from None


def _export_result(src: Path, source_sha: str, data: bytes, info, out: Path, plan: dict | None,
                   notes: list[str]) -> ExportResult:
    """What the export holds: the model's figures, operators, input and output, class names, and notes."""
    from .analysis.tflm import tflm_arena_bytes

    model = _read_model(data)
    sg = model.subgraphs[0]
    arena = int(tflm_arena_bytes(data))
    classes = list(info.class_names) if info else None
    output = _tensor_info(model, sg.outputs[0])
    if classes is not None and len(classes) != output["elements"]:
        notes.append(f"model_info.json names {len(classes)} classes but the output has {output['elements']} "
                     f"values: no class names exported")
        classes = None
    res = ExportResult(
        out_dir=out, source=src, model_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), source_sha256=source_sha,
        tensor_arena_size=(arena + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT, tflm_arena_bytes=arena,
        operators=op_resolver_methods(model), input=_tensor_info(model, sg.inputs[0]), output=output,
        class_names=classes, offline_plan=plan, notes=notes,
    )
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        res.notes.append(f"the model has {len(sg.inputs)} inputs and {len(sg.outputs)} outputs: "
                         f"model_settings.h describes the first of each")
    return res


def _write_files(staging: Path, res: ExportResult, data: bytes, info) -> None:
    """The export's sources, README, model copy and manifest in ``staging``, each synced to disk."""
    files = {
        "model_data.cc": _model_data_cc(data, res.source.name),
        "model_data.h": _MODEL_DATA_H,
        "model_settings.h": _settings_h(res, _preprocessing_note(info, res.input)),
        "op_resolver.h": _resolver_h(res.operators),
        "README.md": _readme(res),
    }
    for name, text in files.items():
        (staging / name).write_text(text, encoding="utf-8")
    (staging / MODEL_COPY).write_bytes(data)
    manifest = res.to_json()
    manifest["out_dir"] = res.out_dir.name
    manifest["source"] = res.source.name
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for p in staging.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


def publish(run_dir: str | Path, dest: str | Path) -> Path | None:
    """For ``zoo add``: give the zoo folder ``dest`` (which holds the run's model_int8.tflite now) the run's export.

    The run's own export is copied when it was made from that model; otherwise an export already in ``dest``
    that was made from another model is made again (with the same offline-plan choice), so that a zoo
    folder never holds the export of an older model. Returns the export folder, or None when there is none.
    """
    src, out = Path(run_dir) / rundir.EXPORT, Path(dest) / rundir.EXPORT
    model = Path(dest) / rundir.INT8_TFLITE
    sha = hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else None

    def manifest(folder: Path) -> dict:
        try:
            m = rundir.parse_json((folder / MANIFEST).read_text(encoding="utf-8"))
            return m if isinstance(m, dict) else {}
        except (OSError, ValueError):
            return {}

    mine = manifest(src)
    if mine.get("source_sha256") == sha and all((src / n).is_file() for n in EXPORT_FILES):
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
        try:
            for n in EXPORT_FILES:
                shutil.copyfile(src / n, staging / n)
            _install(staging, out)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return out
    old = manifest(out)
    if not old:
        return None
    if old.get("source_sha256") != sha and sha is not None:
        export_model(model, out, offline_plan=bool(old.get("offline_plan")))
    return out


# -- CLI ---------------------------------------------------------------------------------------------
def register_cli(subparsers) -> None:
    """Add ``export MODEL_OR_RUN_DIR --out DIR [--offline-plan] [--json]``."""
    p = subparsers.add_parser("export", help="write a TensorFlow Lite Micro export of a .tflite: C array, settings "
                                             "(arena size), op resolver")
    p.add_argument("model", metavar="MODEL_OR_RUN_DIR",
                   help=f"a .tflite, or a run directory / zoo folder holding {rundir.INT8_TFLITE}")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (an earlier export there is replaced)")
    p.add_argument("--offline-plan", action="store_true",
                   help="where mcuzoo's memory plan beats TFLM's, write it into the model as OfflineMemoryAllocation")
    p.add_argument("--json", action="store_true", help="print export.json on stdout")
    p.set_defaults(fn=cmd_export)


def cmd_export(args) -> int:
    from .console import console

    res = export_model(args.model, args.out, offline_plan=args.offline_plan)
    for note in res.notes:
        console.print(f"[yellow]note:[/] {note}")
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    plan = ""
    if res.offline_plan:
        p = res.offline_plan
        plan = f", offline plan {p['planned_bytes']:,} B (TFLM's greedy plan {p['tflm_greedy_bytes']:,} B)"
    print(f"{res.out_dir}: {res.model_bytes:,} B model, kTensorArenaSize {res.tensor_arena_size:,} B, "
          f"{len(res.operators)} operators{plan}")
    return 0
