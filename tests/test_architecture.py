"""House rules checked on every test run: dependency contracts, lint, types.

import-linter enforces DESIGN.md's dependency rules (src never imports prefect, flows or tasks;
vendor SDKs stay in their adapters; GX stays in the gate's GX layer). ruff and mypy keep main clean.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_keep_prefect_and_vendor_sdks_out_of_the_library():
    proc = _run(str(BIN / "lint-imports"), "--no-cache")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_ruff_lint_and_format_are_clean():
    lint = _run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout[-3000:]


@pytest.mark.slow
def test_mypy_finds_no_type_errors_in_the_library():
    proc = _run(str(BIN / "mypy"))
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_library_imports_without_prefect_loaded():
    """Importing the whole library must not drag prefect in, even indirectly."""
    code = (
        "import sys, tradeflow.cli, tradeflow.data.ingest, tradeflow.data.quality, tradeflow.data.store;"
        "assert 'prefect' not in sys.modules, sorted(m for m in sys.modules if m.startswith('prefect'))"
    )
    proc = _run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
