"""House rules checked on every test run: dependency contracts, lint, types.

import-linter enforces DESIGN.md's dependency rules (src never imports prefect, flows or tasks;
tradeflow.infra imports nothing else from tradeflow; vendor SDKs only under adapters/<venue>/; GX
stays in the gate's GX layer). Source scans keep wall-clock reads out of src/ and vendor SDK imports
inside their venue's adapter. ruff and mypy keep main clean.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LIBRARY = ROOT / "src" / "tradeflow"


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


# --- import cycles ----------------------------------------------------------------------------
# Built with ast rather than grimp: grimp also counts function-local imports, which are the
# deliberate way to load a heavy or optional dependency late, and cannot tell an `if TYPE_CHECKING:`
# block from a real import.


def _modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], *, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported (function bodies do not)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if type_checking or not _is_type_checking(node.test):
                yield from _imports(node.body, type_checking=type_checking)
            yield from _imports(node.orelse, type_checking=type_checking)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _imports(block, type_checking=type_checking)
        elif isinstance(node, ast.ClassDef | ast.With):
            yield from _imports(node.body, type_checking=type_checking)


def _import_graph(package: Path, *, type_checking: bool = False) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports at import time. `from a import b` is an
    edge to the module a.b when there is one, else to a (whose __init__ runs)."""
    modules = _modules(package)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str | None] = set()
        for node in _imports(ast.parse(path.read_text()).body, type_checking=type_checking):
            if isinstance(node, ast.Import):
                deps.update(owner(alias.name) for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            deps.update(owner(f"{base}.{alias.name}") for alias in node.names)
        graph[module] = {d for d in deps if d is not None and d != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _describe(graph: dict[str, set[str]], cycles: list[list[str]]) -> str:
    return "; ".join(" / ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in cycles)


def test_the_import_cycle_check_sees_a_cycle_and_ignores_type_checking_and_function_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from .. import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("from pkg import d\ndef f():\n    from pkg import a\n")

    graph = _import_graph(pkg)

    assert _cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert _cycles(_import_graph(pkg, type_checking=True)) == [["pkg.a", "pkg.c", "pkg.sub.b"], ["pkg.d", "pkg.e"]]


def test_the_library_has_no_import_cycles():
    """Each module of src/tradeflow can be imported on its own: no module needs another that
    needs it back while it is still half-initialised (imports under `if TYPE_CHECKING:` and inside
    functions do not run at import time and are not counted here)."""
    graph = _import_graph(LIBRARY)
    assert len(graph) > 50  # the walk found the library, so an empty graph cannot pass
    assert _cycles(graph) == [], _describe(graph, _cycles(graph))


def test_the_library_has_no_import_cycles_even_through_type_checking_imports():
    """The stricter reading the issue used for its two named cycles (reconcile <-> tick, and
    learning.experiments <-> learning.store): a type-only back-reference is still a cycle in the
    design, and mypy has to resolve it."""
    graph = _import_graph(LIBRARY, type_checking=True)
    assert _cycles(graph) == [], _describe(graph, _cycles(graph))


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


# --- vendor SDKs only in their venue's adapter --------------------------------------------------
# SDK -> the venue folder under src/tradeflow/adapters/ that may import it (None: nowhere; ib_insync
# breaks in worker threads without an event loop, ib_async is its maintained successor).
VENDOR_SDK_HOME: dict[str, str | None] = {"yfinance": "yahoo", "alpaca": "alpaca", "ib_async": "ib", "ib_insync": None}
_DYNAMIC_IMPORTS = ("import_module", "__import__")


def _vendor_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, SDK) of every vendor SDK import anywhere in the tree: module level, inside functions,
    under `if TYPE_CHECKING:` or `with warnings.catch_warnings():`, and importlib/__import__ calls
    with a literal name (import-linter sees none of the dynamic ones)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] in _DYNAMIC_IMPORTS:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names = [first.value]
        found += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in VENDOR_SDK_HOME]
    return found


def test_vendor_sdks_are_imported_only_in_their_venue_under_adapters():
    """DESIGN.md dependency rule 2, checked on the source text as well as by import-linter: an
    SDK import outside src/tradeflow/adapters/<venue>/ (even a function-local one) fails here."""
    stray, homes_seen = [], set()
    for path in sorted(LIBRARY.rglob("*.py")):
        rel = path.relative_to(LIBRARY).parts
        venue = rel[1] if len(rel) > 2 and rel[0] == "adapters" else None
        for line, sdk in _vendor_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if venue is not None and venue == VENDOR_SDK_HOME[sdk]:
                homes_seen.add(sdk)
            else:
                stray.append(f"src/tradeflow/{'/'.join(rel)}:{line}: {sdk}")
    assert stray == [], "vendor SDK imports outside their adapters/<venue>/:\n" + "\n".join(stray)
    # The adapters really import their SDKs here, so a scan that finds nothing cannot pass.
    assert homes_seen == {sdk for sdk, home in VENDOR_SDK_HOME.items() if home is not None}


def test_the_vendor_import_scan_finds_each_form_of_import():
    code = """
import yfinance as yf
import alpaca.trading.client
from ib_async import IB
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from alpaca.common.exceptions import APIError
def f():
    from ib_insync import IB
    import importlib
    importlib.import_module("yfinance")
    __import__("ib_async.wrapper")
from .alpaca import x
import alpacaish, requests
"""
    assert [sdk for _, sdk in _vendor_imports(ast.parse(code))] == [
        "yfinance",
        "alpaca",
        "ib_async",
        "alpaca",
        "ib_insync",
        "yfinance",
        "ib_async",
    ]


# --- typed audit events -------------------------------------------------------------------------


def _free_audit_kinds(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, first argument) of every `.audit(...)` call whose kind is written at the call site (a
    string, an f-string, an AuditKind member) instead of a domain.events event."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "audit":
            first = node.args[0] if node.args else None
            free = isinstance(first, ast.Constant | ast.JoinedStr) or (
                isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and first.value.id == "AuditKind"
            )
            if free or any(k.arg in ("kind", "payload") for k in node.keywords):
                found.append((node.lineno, ast.unparse(first) if first is not None else "<keyword>"))
    return found


def test_the_library_audits_only_typed_events():
    """Every audit row on the trading path is a domain.events value: a kind spelt at a call site is
    one no reader of the log (the learning review, the tests, an operator's query) knows about."""
    stray = [
        f"src/tradeflow/{path.relative_to(LIBRARY).as_posix()}:{line}: audit({arg}, ...)"
        for path in sorted(LIBRARY.rglob("*.py"))
        for line, arg in _free_audit_kinds(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert stray == [], "free-string audit kinds (record a domain.events event):\n" + "\n".join(stray)


def test_the_free_audit_kind_scan_finds_each_form():
    code = """
ledger.audit("alert", {"message": m}, now)
rt.ledger.audit(f"{kind}", {}, now)
ledger.audit(AuditKind.ALERT, {}, now)
ledger.audit(kind="alert", payload={}, now=now)
ledger.audit(AlertRaised(m), now)
"""
    assert [arg for _, arg in _free_audit_kinds(ast.parse(code))] == [
        "'alert'",
        "f'{kind}'",
        "AuditKind.ALERT",
        "<keyword>",
    ]
