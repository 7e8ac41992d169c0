"""Loading a saved model: the one place that opens a .keras file.

Entry point: :func:`load_keras_model` (safe mode on, so no code from files runs;
a zip bomb is refused before Keras opens the archive). It registers mcuzoo's custom
layers (:mod:`mcuzoo.models.layers`) before it loads.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..console import captured_output
from ..errors import ModelFileError, first_line

if TYPE_CHECKING:
    import keras


#: Largest uncompressed sizes accepted in a .keras archive (Keras reads its members whole into memory):
#: the JSON members, and everything together. A zip bomb is refused before Keras opens it.
KERAS_JSON_LIMIT = 64 << 20
KERAS_TOTAL_LIMIT = 4 << 30


def _check_keras_archive(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip: Keras says what it is not
    for info in infos:
        if info.filename.endswith(".json") and info.file_size > KERAS_JSON_LIMIT:
            raise ModelFileError(f"cannot load Keras model {path}: {info.filename} is too large "
                                 f"({info.file_size:,} bytes uncompressed)")
    total = sum(i.file_size for i in infos)
    if total > KERAS_TOTAL_LIMIT:
        raise ModelFileError(f"cannot load Keras model {path}: the archive is too large ({total:,} bytes uncompressed)")


def load_keras_model(path: str | Path, compile: bool = False) -> "keras.Model":
    """Load a .keras file with safe mode on (no code from files runs)."""
    import keras

    from . import layers  # noqa: F401 - registers mcuzoo's custom layers, which safe mode loads by name

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    _check_keras_archive(path)
    try:
        with captured_output():
            return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as e:  # Keras raises many kinds for a bad file
        raise ModelFileError(f"cannot load Keras model {path}: {first_line(e)}") from None
