"""Terminal output: one rich console, quiet TensorFlow, captured converter noise."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """Print one unwrapped line to stderr (errors must stay one line whatever the terminal width)."""
    print(message, file=sys.stderr, flush=True)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ and Python start-up chatter (call before importing it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    import warnings

    # Keras and TF warn about internals users cannot act on (e.g. shuffle on a tf.data input)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(keras|tensorflow)\b.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Send everything written to fds 1 and 2 (C++ included) to a buffer.

    Yields a list that holds the captured lines once the block ends, so that a
    caller can quote the last of them when the wrapped call fails.
    """
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), 1)
        os.dup2(buf.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            buf.seek(0)
            lines.extend(buf.read().decode("utf-8", "replace").splitlines())


def step_bar(title: str, total: int):
    """A transient progress bar over ``total`` steps, with an ``info`` field: (progress, task), started."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(title), BarColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                        console=console, transient=True)
    task = progress.add_task("", total=total, info="")
    progress.start()
    return progress, task
