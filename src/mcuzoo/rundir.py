"""Run directories: where every artifact of a run lands, written atomically.

Each file is written to a temporary name in the same folder and renamed into
place (``os.replace`` is atomic on POSIX), so a crash or a full disk never leaves
a half-written model or JSON that a later stage would trust. A run directory is
held by one process at a time through a lock file holding its PID.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ModelFileError, RunDirError

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
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return ModelInfo(
            class_names=[str(c) for c in d["class_names"]],
            input_shape=tuple(int(v) for v in d["input_shape"]),
            rescale=float(d["rescale"]), offset=float(d["offset"]),
            model=str(d.get("model", "")), dataset=str(d.get("dataset", "")),
            interpolation=str(d.get("interpolation", "bilinear")),
            aspect=str(d.get("aspect", "fit")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ModelFileError(f"{p} is not a valid mcuzoo model_info.json") from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"missing file {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RunDirError(f"{path} is not valid JSON") from None


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
    raise RunDirError(f"too many runs named '{name}' in {root}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    def _holder(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def acquire(self) -> "RunLock":
        folder = self.path.parent
        if not folder.is_dir():
            raise RunDirError(f"cannot lock run directory {folder}: not a folder")
        try:
            with _folder_mutex(folder):
                pid = self._holder() if self.path.exists() else 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise RunDirError(f"run directory {folder} is in use by another mcuzoo process (pid {pid})")
                # free, stale (its holder is dead) or ours: write our PID under a temp name, rename it in place
                fd, tmp = tempfile.mkstemp(prefix=".lock.", suffix=".tmp", dir=folder)
                with os.fdopen(fd, "w") as fh:
                    fh.write(str(os.getpid()))
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
