"""User-facing errors.

Every problem a user can cause (bad config, missing or corrupt files, impossible
shapes) is raised as a :class:`McuzooError` whose message is one line naming the
problem. The CLI prints it as ``mcuzoo: error: <message>`` and exits with
``exit_code``; nothing else is shown, never a traceback.
"""
from __future__ import annotations


class McuzooError(Exception):
    """A problem the user can fix. The message is one line."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(McuzooError):
    """Unknown key, bad value, bad override: exit code 2."""

    exit_code = 2


class DataError(McuzooError):
    """Missing, corrupt or wrongly laid-out dataset files."""


class ModelFileError(McuzooError):
    """Missing, malformed or unsupported model files."""


class RunDirError(McuzooError):
    """A run directory that is missing, incomplete or in use."""


def first_line(e: BaseException, limit: int | None = 200) -> str:
    """An exception's message cut to one line for a :class:`McuzooError`: its first line, at most ``limit``
    characters (None: the whole line), or the exception's type name when it has no message."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
