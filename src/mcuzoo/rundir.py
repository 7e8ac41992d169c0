"""Run directories: where every artifact of a run lands, written atomically.

Each file is written to a temporary name in the same folder and renamed into
place (``os.replace`` is atomic on POSIX), so a crash or a full disk never leaves
a half-written model or JSON that a later stage would trust. A run directory is
held by one process at a time through a lock file holding its PID.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, cast

from .errors import McuzooError, ModelFileError, RunDirError, first_line

if TYPE_CHECKING:
    from .config import Config

LOCK_NAME = ".lock"

# Names of the artifacts of a run, in one place.
CONFIG = "config.yaml"
MODEL_INFO = "model_info.json"
FLOAT_MODEL = "float_model.keras"
INT8_TFLITE = "model_int8.tflite"
TRAINING_LOG = "training_log.csv"
HISTORY = "history.json"
METRICS = "metrics.json"
ANALYSIS = "analysis.json"
EXPORT = "export"  # the folder of the TFLM export (export stage)


# the temporary names of atomic_path (".metrics.k2j4x9_a.tmp.json") and of the lock (".lock.k2j4x9_a.tmp")
TEMP_RE = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[^/]*)?$")


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def disk_error(path: str | Path, e: OSError) -> RunDirError:
    """One line naming the path for an OSError met while writing it (full disk, read-only folder, ...)."""
    why = e.strerror or os.strerror(e.errno) if e.errno else (str(e) or type(e).__name__)
    hint = " (free some space and run again; --resume continues a run)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return RunDirError(f"cannot write {path}: {why}{hint}")


@dataclass
class ModelInfo:
    """What travels next to a model file: class names and preprocessing."""

    class_names: list[str]
    input_shape: tuple[int, int, int]
    rescale: float
    offset: float
    model: str = ""
    dataset: str = ""
    interpolation: str = "bilinear"
    aspect: str = "fit"

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def read_model_info(model_path: str | Path) -> ModelInfo | None:
    p = Path(model_path).parent / MODEL_INFO
    if not os.path.lexists(p):
        return None
    if not p.is_file():
        raise ModelFileError(f"{p} is not a file")
    try:
        d = parse_json(p.read_text(encoding="utf-8"))
        info = ModelInfo(
            class_names=[str(c) for c in d["class_names"]],
            input_shape=cast("tuple[int, int, int]", tuple(int(v) for v in d["input_shape"])),
            rescale=float(d["rescale"]), offset=float(d["offset"]),
            model=str(d.get("model", "")), dataset=str(d.get("dataset", "")),
            interpolation=str(d.get("interpolation", "bilinear")),
            aspect=str(d.get("aspect", "fit")),
        )
        if not (math.isfinite(info.rescale) and math.isfinite(info.offset) and info.rescale > 0
                and len(info.input_shape) == 3 and min(info.input_shape) >= 1):
            raise ValueError("out of range")
        return info
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError, RecursionError, OSError):
        raise ModelFileError(f"{p} is not a valid mcuzoo model_info.json") from None


def input_scaling(info: ModelInfo | None, cfg: Config) -> tuple[float, float]:
    """The ``(rescale, offset)`` a model was trained with: its model_info.json's, else the config's."""
    if info is not None:
        return info.rescale, info.offset
    return cfg.preprocessing.rescale, cfg.preprocessing.offset


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask), not mkstemp's 0600.
    An OSError on the way (full disk, read-only folder) is a one-line RunDirError naming ``path``; the real
    name then still holds its previous version, and the temporary file is removed.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
        except OSError as e:
            raise disk_error(path, e) from None
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if not tmp.is_dir():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise disk_error(path, e) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                if tmp.exists():
                    tmp.unlink()


def remove_temp_files(folder: str | Path) -> list[str]:
    """Remove what a killed writer left behind in ``folder`` (its atomic_path temp files); the names removed.

    Call it only while holding the folder's RunLock: a live writer's temp file would go too.
    """
    removed: list[str] = []
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        if TEMP_RE.match(p.name) and not p.is_symlink() and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p.name)
    return removed


def safe_join(root: str | Path, name: str, what: str = "name") -> Path:
    """``root / name`` for a ``name`` read from a file: refused unless it stays inside ``root``.

    ``name`` may hold sub-folders (``a/b``) but no absolute path, no ``..``, no NUL, no backslash and no
    empty part; symlinks already inside ``root`` may not lead out of it either.
    """
    text = name if isinstance(name, str) else None
    if not text or "\x00" in text or "\\" in text or text.startswith("/") or len(text) > 255 \
            or any(part in ("", ".", "..") for part in text.split("/")):
        raise RunDirError(f"{what} {_short(name)} is not a plain name inside {root}")
    root_p = Path(root)
    joined = root_p / text
    try:
        real_root = os.path.realpath(root_p)
        real = os.path.realpath(joined)
    except (OSError, ValueError):
        raise RunDirError(f"{what} {_short(name)} is not a plain name inside {root}") from None
    if os.path.commonpath([real_root, real]) != real_root:
        raise RunDirError(f"{what} {_short(name)} leads outside {root}")
    return joined


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s:/]+/)*([^\s:/]+)")


def without_machine_paths(note: str) -> str:
    """A run's note with each absolute path shortened to its last name ("/work/shared/data/flowers" ->
    "flowers"): for what is published (cards, the zoo's files), where the data lay on the machine that
    trained it tells its reader nothing (the config's ``dataset.path`` says where the data is expected)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), note)


def _short(v: Any, n: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def _non_finite(obj: Any, where: str = "") -> str | None:
    """The path (``history.loss[3]``) of the first NaN or infinity in ``obj``, else None."""
    if isinstance(obj, float):
        return where or "the value" if not math.isfinite(obj) else None
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _non_finite(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = _non_finite(v, f"{where}[{i}]")
            if found:
                return found
    return None


def json_text(obj: Any, what: str = "JSON") -> str:
    """Strict JSON (RFC 8259): a NaN or an infinity is refused with one line naming where it is, never
    written as the bare ``NaN`` / ``Infinity`` that other JSON readers reject."""
    try:
        return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        where = _non_finite(obj) or "a value"
        raise McuzooError(f"cannot write {what}: {where} is not a finite number") from None


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json_text(obj, str(path)) + "\n")


def no_json_constant(name: str) -> Any:
    """``parse_constant`` of strict JSON reading: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` of strict JSON reading: a key given twice in one object would silently lose one."""
    d: dict = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"key {k!r} appears twice in one object")
        d[k] = v
    return d


def parse_json(text: str, parse_constant: Callable[[str], Any] = no_json_constant) -> Any:
    """The one strict JSON parser of mcuzoo's files: no ``NaN`` / ``Infinity`` (Python's json accepts them),
    no key twice in one object. A ValueError says which."""
    return json.loads(text, parse_constant=parse_constant, object_pairs_hook=_unique_keys)


def read_json(path: str | Path) -> Any:
    """Strict JSON (:func:`parse_json`) from ``path``; every problem is a one-line RunDirError naming it."""
    path = Path(path)
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"missing file {path}") from None
    except IsADirectoryError:
        raise RunDirError(f"{path} is a folder, not a JSON file") from None
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        why = ("not UTF-8" if isinstance(e, UnicodeDecodeError) else
               "nested too deeply" if isinstance(e, RecursionError) else first_line(e))
        raise RunDirError(f"{path} is not valid JSON: {why}") from None


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """Claim a fresh folder ``output_dir/name`` (then ``name2``, ``name3``...)."""
    root = Path(output_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create output folder {root}: {e.strerror}") from None
    for i in range(1, 10_000):
        candidate = root / (name if i == 1 else f"{name}{i}")
        try:
            candidate.mkdir()  # atomic claim: fails if another run took it
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"cannot create run directory {candidate}: {e.strerror or e}") from None
    raise RunDirError(f"too many runs named '{name}' in {root}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, OSError):  # not a pid at all
        return False
    return True


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), None where unknown.

    With its pid, it names one process: a pid reused by another process after a crash has another start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return stat[stat.rindex(")") + 2:].split()[19]  # fields after "(comm)": state is field 3
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\x00", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def _folder_id(folder: Path) -> str:
    """The folder's identity (device:inode): kept when it is renamed, new for a copy of it."""
    st = os.stat(folder)
    return f"{st.st_dev}:{st.st_ino}"


def _holder_alive(pid: int, start: str | None) -> bool:
    """Whether the process that wrote a lock still runs: its pid lives and, where the lock records it, with
    the same start time; a lock of an older mcuzoo (pid only) counts only if that pid is an mcuzoo process."""
    if not _pid_alive(pid):
        return False
    if start is not None:
        now = _start_time(pid)
        return now is None or now == start
    cmd = _cmdline(pid)
    return cmd is None or "mcuzoo" in cmd


@contextlib.contextmanager
def _folder_mutex(folder: Path) -> Iterator[None]:
    """Serialize lock checks between processes: an exclusive ``flock`` on the folder itself.

    Held for microseconds (check the lock file, take over a stale one, write ours), so two
    processes can never both find the lock free or both take over the same stale lock. The
    kernel drops it when the holder dies. Without ``fcntl`` (not POSIX) there is no mutex.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


class RunLock:
    """Exclusive hold on a run directory; a second holder is refused with a clear message."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME

    def _holder_info(self) -> tuple[int, str | None, str | None]:
        """(pid, start time or None, folder identity or None) the lock file records; (0, None, None) when there
        is none or it is unreadable. The file holds ``PID START FOLDER`` (START ``-`` where unknown; older mcuzoos
        wrote less)."""
        try:
            parts = self.path.read_text(encoding="ascii", errors="replace").split()
            pid = int(parts[0]) if parts else 0
            return ((pid if 0 < pid < 1 << 22 else 0), (parts[1] if len(parts) > 1 and parts[1] != "-" else None),
                    (parts[2] if len(parts) > 2 else None))
        except (OSError, ValueError):
            return 0, None, None

    def _holder(self) -> int:
        return self._holder_info()[0]

    def acquire(self) -> "RunLock":
        folder = self.path.parent
        if not folder.is_dir():
            raise RunDirError(f"cannot lock run directory {folder}: not a folder")
        try:
            with _folder_mutex(folder):
                here = _folder_id(folder)
                pid, start, there = self._holder_info() if self.path.exists() else (0, None, None)
                # a lock copied with its folder (cp -a of a running run) names the folder it was written in
                if pid and pid != os.getpid() and there in (None, here) and _holder_alive(pid, start):
                    raise RunDirError(f"run directory {folder} is in use by another mcuzoo process (pid {pid})")
                # free, stale (its holder is dead, the pid now names another process, or it was copied) or
                # ours: write our PID, start time and folder identity under a temp name, rename it in place
                fd, tmp = tempfile.mkstemp(prefix=".lock.", suffix=".tmp", dir=folder)
                with os.fdopen(fd, "w") as fh:
                    me = _start_time(os.getpid()) or "-"
                    fh.write(f"{os.getpid()} {me} {here}\n")
                os.chmod(tmp, 0o666 & ~_umask())
                os.replace(tmp, self.path)
        except OSError as e:
            raise RunDirError(f"cannot lock run directory {folder}: {e.strerror or e}") from None
        return self

    def release(self) -> None:
        try:
            with _folder_mutex(self.path.parent):
                if self._holder() in (os.getpid(), 0):  # never remove a lock another process took over
                    self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
