"""House rules checked on every test run: dependency contracts, lint, types.

import-linter enforces DESIGN.md's dependency rules (src never imports prefect, flows or tasks;
tradeflow.infra imports nothing else from tradeflow; vendor SDKs stay in their adapters; GX stays in
the gate's GX layer). A source scan keeps wall-clock reads out of src/. ruff and mypy keep main clean.
"""

from __future__ import annotations

import ast
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


# Where src/ may read the wall clock, and why: (file under src/tradeflow, enclosing function) -> reason.
WALL_CLOCK_ALLOWED = {
    ("cli.py", "_now"): "the CLI's one documented wall-clock read; --now replays a past instant",
}
_CLOCK_CLASSES = ("datetime", "date", "Timestamp")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _wall_clock_reads(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, enclosing function, expression) of every wall-clock read: datetime.now/utcnow/today,
    date.today, time.time, pd.Timestamp.now/today/utcnow, also when passed uncalled (a default
    argument), and Timestamp("now")-style strings."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name
        if isinstance(node, ast.Attribute):
            owner = _dotted(node.value)
            clock = node.attr in ("now", "utcnow", "today") and owner.split(".")[-1] in _CLOCK_CLASSES
            if clock or (node.attr == "time" and owner == "time"):
                found.append((node.lineno, func, f"{owner}.{node.attr}"))
        if isinstance(node, ast.ImportFrom) and node.module == "time" and any(a.name == "time" for a in node.names):
            found.append((node.lineno, func, "from time import time"))
        parses_a_string = ("Timestamp", "to_datetime", "datetime64")
        if isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] in parses_a_string:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and str(first.value).lower() in ("now", "today"):
                found.append((node.lineno, func, f'{_dotted(node.func)}("{first.value}")'))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, "<module>")
    return found


def test_the_library_reads_the_wall_clock_only_where_the_allow_list_says():
    """DESIGN.md rule 5: `now` is passed in. A hidden clock read makes a replay differ from the run."""
    src = ROOT / "src" / "tradeflow"
    seen, stray = set(), []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        for line, func, expr in _wall_clock_reads(ast.parse(path.read_text(encoding="utf-8"))):
            if (rel, func) in WALL_CLOCK_ALLOWED:
                seen.add((rel, func))
            else:
                stray.append(f"src/tradeflow/{rel}:{line} in {func}: {expr}")
    assert stray == [], "wall-clock reads in src/ (pass `now` in instead):\n" + "\n".join(stray)
    stale = set(WALL_CLOCK_ALLOWED) - seen
    assert not stale, f"allow-list entries with no clock read left (remove them): {stale}"


def test_the_wall_clock_scan_finds_each_form_of_clock_read():
    """The scan above must not pass vacuously: each form it claims to catch is caught."""
    code = """
import time
from time import time as t
import datetime as dt
import pandas as pd
def f(clock=time.time):
    dt.datetime.now(dt.UTC); dt.datetime.utcnow(); dt.date.today(); pd.Timestamp.now(tz="UTC")
    pd.Timestamp("now"); time.time()
"""
    exprs = [e for _, _, e in _wall_clock_reads(ast.parse(code))]
    assert exprs == [
        "from time import time",
        "time.time",
        "dt.datetime.now",
        "dt.datetime.utcnow",
        "dt.date.today",
        "pd.Timestamp.now",
        'pd.Timestamp("now")',
        "time.time",
    ]
