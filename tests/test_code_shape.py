"""Every function of mcuzoo reads on one screen, or says in its docstring why it does not.

A function's length is counted from its ``def`` line to its last line, inclusive: the signature, the
docstring, comments and blank lines all count (what a reader scrolls through), decorators do not. Nested
functions and methods are measured on their own and also count in the function that holds them.

The convention for a function that stays longer than :data:`MAX_LINES`: its docstring holds a sentence
that starts with the marker ``Longer than a screen`` (:data:`MARKER`) and says why, in at least
:data:`MIN_REASON_WORDS` words, e.g. "Longer than a screen: the three extras share the options, ...".
Splitting it is the first choice; the sentence is for a function whose steps share so many locals that
helpers would only pass them around.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import mcuzoo

PACKAGE = Path(mcuzoo.__file__).parent

#: Lines from ``def`` to the end that one screen shows.
MAX_LINES = 60
#: How a docstring starts the sentence that explains a longer function.
MARKER = "Longer than a screen"
#: Words the explaining sentence needs after the marker (a bare marker explains nothing).
MIN_REASON_WORDS = 8


def functions(root: Path = PACKAGE):
    """(``path::qualified name``, lines, docstring) of every function and method under ``root``."""
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        yield from _walk(tree, rel, "")


def _walk(node, rel: str, prefix: str):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + child.name
            yield f"{rel}::{name}", child.end_lineno - child.lineno + 1, ast.get_docstring(child) or ""
            yield from _walk(child, rel, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _walk(child, rel, prefix + child.name + ".")
        else:
            yield from _walk(child, rel, prefix)


def explains_length(doc: str) -> bool:
    """True when ``doc`` holds the marker sentence with a reason of at least MIN_REASON_WORDS words."""
    m = re.search(re.escape(MARKER) + r"(.*?)(?:\.\s|\.$|$)", " ".join(doc.split()))
    return m is not None and len(re.findall(r"[A-Za-z]\w*", m.group(1))) >= MIN_REASON_WORDS


def long_functions(root: Path = PACKAGE) -> list[tuple[str, int]]:
    """(function, lines) of the functions over MAX_LINES whose docstring does not say why."""
    return [(name, n) for name, n, doc in functions(root) if n > MAX_LINES and not explains_length(doc)]


def test_functions_fit_on_one_screen_or_say_why():
    long = [f"{name} ({n} lines)" for name, n in long_functions()]
    assert long == [], f"over {MAX_LINES} lines without a '{MARKER}: ...' sentence in the docstring"


def test_the_check_sees_a_long_function_and_its_reason(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(
        f"def short():\n    return 1\n\n\n"
        f"def long():\n    '''Sums.'''\n{body}\n\n\n"
        f"class K:\n    def long(self):\n        '''{MARKER}: the steps share the x values, split they would pass them all.'''\n"
        + body.replace("    ", "        ") + "\n\n\n"
        f"def bare():\n    '''{MARKER}.'''\n{body}\n"
    )
    assert long_functions(tmp_path) == [("m.py::long", MAX_LINES + 2), ("m.py::bare", MAX_LINES + 2)]
