"""The type check of src/ runs with the suite (so CI, which runs exactly the README's test command, runs it)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors_in_src():
    pytest.importorskip("mypy", reason="mypy comes with the [test] extra")
    # the settings (files = src/mcuzoo, the pydantic plugin) are pyproject.toml's [tool.mypy]
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [ln for ln in out.stdout.splitlines() if ": error:" in ln]
    assert out.returncode == 0 and not errors, "\n".join(errors or [out.stdout[-2000:], out.stderr[-2000:]])
