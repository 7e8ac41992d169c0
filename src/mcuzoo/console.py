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


def _cell_text(cell) -> str:
    from rich.text import Text

    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell).plain
        except Exception:  # noqa: BLE001 - not markup after all
            return cell
    return ""


def stdout_gone() -> int:
    """stdout's reader has gone (``mcuzoo predict ... | head``): point stdout at /dev/null, so that Python's own
    flush at exit finds no pipe either, and return 141 (128 + SIGPIPE), what a shell reports for a tool killed
    by the closed pipe. Stop quietly with it, as Unix tools do."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


def protect_numbers(table) -> None:
    """Make a rich Table never cut a number: no ellipsis anywhere (long text folds onto more lines), and a
    column of short cells with digits in them (counts, sizes, percentages, shapes) keeps its full width."""
    from rich.cells import cell_len

    for column in table.columns:
        if column.overflow == "ellipsis":
            column.overflow = "fold"
        texts = [_cell_text(c) for c in column._cells]
        if texts and all(len(t) <= 24 for t in texts) and any(ch.isdigit() for t in texts for ch in t):
            column.no_wrap = True
            column.min_width = max([cell_len(t) for t in texts] + [cell_len(str(column.header))])


class ResultConsole(Console):
    """The console for results, on stdout (progress and notes go to :data:`console`, on stderr).

    Numbers in tables are never cut (:func:`protect_numbers`), and when stdout is not a terminal (a pipe,
    a file) each thing printed is as wide as it needs to be, whatever $COLUMNS says, so that nothing wraps.
    A table's title wider than the table gets a line of its own.
    """

    def on_broken_pipe(self) -> None:
        """A closed pipe (``| head``) is handled in one place, mcuzoo.cli.main (rich would exit with 1 itself)."""
        raise BrokenPipeError

    def _title_line(self, table):
        """A table's title wider than the table itself, as a line of its own (a rich title wraps to the
        table's width: 'mcuzoo predict' over a narrow table would print its model path a word per line)."""
        from rich.measure import Measurement
        from rich.text import Text

        if not table.title:
            return None
        title = table.title if isinstance(table.title, Text) else self.render_str(table.title)
        width = Measurement.get(self, self.options.update(width=10_000), table).maximum
        if title.cell_len <= width:
            return None
        table.title = None
        title = title.copy()
        title.stylize("table.title")
        return title

    def print(self, *objects, **kwargs) -> None:
        from rich.measure import Measurement
        from rich.table import Table

        shown = []
        for o in objects:
            if isinstance(o, Table):
                protect_numbers(o)
                title = self._title_line(o)
                if title is not None:
                    shown.append(title)
            shown.append(o)
        objects = tuple(shown)
        if self.is_terminal or not objects:
            return super().print(*objects, **kwargs)
        saved = self.width
        self.width = 10_000
        need = max(Measurement.get(self, self.options, self.render_str(o) if isinstance(o, str) else o).maximum
                   for o in objects)
        self.width = max(80, need)
        try:
            super().print(*objects, **kwargs)
        finally:
            self.width = saved


def result_console() -> ResultConsole:
    """A :class:`ResultConsole` on the current stdout."""
    return ResultConsole(highlight=False, soft_wrap=False)


def print_out(*renderables) -> None:
    """Print results (tables, lines) to stdout: see :class:`ResultConsole`."""
    result_console().print(*renderables)


#: The environment mcuzoo runs TensorFlow in (a value already set in the environment wins).
TF_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",  # oneDNN's reordered float sums change results in the last digits
    "KERAS_BACKEND": "tensorflow",
    "GRPC_VERBOSITY": "ERROR",
    "ABSL_MIN_LOG_LEVEL": "3",
}


def quiet_tensorflow() -> None:
    """Set TensorFlow's environment (:data:`TF_ENV`) and the warning filters of mcuzoo.

    ``import mcuzoo`` calls it, so the Python API and the CLI run alike. It has to come before
    TensorFlow is imported: when TensorFlow is already loaded, a warning says that its settings
    may differ from the CLI's.
    """
    late = "tensorflow" in sys.modules and "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    for key, value in TF_ENV.items():
        os.environ.setdefault(key, value)
    import warnings

    if late:
        warnings.warn("mcuzoo: TensorFlow was imported before mcuzoo, so its oneDNN setting is not mcuzoo's "
                      "(TF_ENABLE_ONEDNN_OPTS=0): results may differ from the CLI's in the last digits; "
                      "import mcuzoo first", RuntimeWarning, stacklevel=3)

    # Keras and TF warn about internals users cannot act on (e.g. shuffle on a tf.data input)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(keras|tensorflow)\b.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Pillow and matplotlib warn about inputs that mcuzoo checks itself or cannot change: a large image
    # (refused from its header), a class name with a glyph no font has, odd EXIF or palette data
    warnings.filterwarnings("ignore", module=r"(PIL|matplotlib)\b.*")
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")


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
