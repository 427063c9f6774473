"""Every call that brings rows to the driver, reads table files, lists them or ships a closure is in docs/scaling.md.

The code is scanned, per enclosing function, for calls named ``collect``,
``toPandas``, ``toLocalIterator``, ``read_table`` and ``read_row_group`` (rows),
``ParquetFile`` (a Parquet footer), ``inputFiles``, ``snapshot_files`` and
``parquet_files`` (file lists), and for task closures built on the driver: a
``mapInArrow``, ``mapInPandas`` or ``applyInPandas`` whose function is made by a
call or defined in the calling function (so it carries that function's data to
every task). The documented table must list exactly those, so a new one cannot
slip in unlisted and a removed one cannot linger in the docs.
"""

from __future__ import annotations

import ast
import collections
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "samplemix_spark"
# Method calls (``df.collect()``, ``pq.ParquetFile(...)``) and, for the project's own helpers, plain calls.
CALLS = {"collect", "toPandas", "toLocalIterator", "read_table", "read_row_group", "ParquetFile", "inputFiles"}
FUNCTIONS = {"snapshot_files", "parquet_files", "ParquetFile"}
TASK_MAPS = {"mapInArrow", "mapInPandas", "applyInPandas"}
ROW = re.compile(r"^\| `([^`]+)` \| (\w+) \| (\d+) \|", re.MULTILINE)


def _called(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr if call.func.attr in CALLS | TASK_MAPS else None
    return call.func.id if isinstance(call.func, ast.Name) and call.func.id in FUNCTIONS else None


def _builds_closure(call: ast.Call, local_functions: set) -> bool:
    """A task map whose function is made by a call, or is a function nested in the caller."""
    if _called(call) not in TASK_MAPS or not call.args:
        return False
    given = call.args[0]
    return isinstance(given, ast.Call) or (isinstance(given, ast.Name) and given.id in local_functions)


def call_sites(root: Path) -> collections.Counter:
    """(file::function, call) -> how many such calls the function makes (nested functions count as their own);
    task closures count as the call ``closure``."""
    found: collections.Counter = collections.Counter()
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()

        def visit(node: ast.AST, scope: list[str], local_functions: set) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    nested = {c.name for c in ast.walk(child) if c is not child
                              and isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef))}
                    visit(child, [*scope, child.name], nested)
                    continue
                if isinstance(child, ast.Call):
                    name = "closure" if _builds_closure(child, local_functions) else _called(child)
                    if name and name not in TASK_MAPS:
                        found[(f"{where}::{'.'.join(scope) or '<module>'}", name)] += 1
                visit(child, scope, local_functions)

        visit(ast.parse(path.read_text()), [], set())
    return found


def documented() -> collections.Counter:
    text = (REPO / "docs" / "scaling.md").read_text()
    section = text.split("## What reaches the driver", 1)[1]
    return collections.Counter({(where, call): int(n) for where, call, n in ROW.findall(section)})


def test_every_driver_call_site_is_listed_in_docs_scaling():
    found, listed = call_sites(PACKAGE), documented()
    missing = sorted(set(found) - set(listed))
    stale = sorted(set(listed) - set(found))
    miscounted = sorted(k for k in set(found) & set(listed) if found[k] != listed[k])
    assert not missing, f"calls not listed in docs/scaling.md 'What reaches the driver': {missing}"
    assert not stale, f"listed in docs/scaling.md but no longer in the code: {stale}"
    assert not miscounted, [(k, found[k], listed[k]) for k in miscounted]


def test_the_scan_sees_calls_in_methods_and_nested_functions(tmp_path):
    (tmp_path / "m.py").write_text(
        "class A:\n    def f(self, df):\n        return df.collect()\n"
        "def g(df):\n    def inner():\n        return df.toPandas()\n    return inner(), df.toPandas(), df.head()\n")
    (tmp_path / "n.py").write_text(
        "def h(df, big):\n    def run(batches):\n        yield from big\n    return df.mapInArrow(run, 's')\n"
        "def k(df, big):\n    return df.mapInPandas(make(big), 's'), df.mapInArrow(module_level, 's')\n"
        "def files(store):\n    return snapshot_files(store, 't'), pq.ParquetFile('x')\n")
    assert call_sites(tmp_path) == {("m.py::A.f", "collect"): 1, ("m.py::g.inner", "toPandas"): 1,
                                    ("m.py::g", "toPandas"): 1, ("n.py::h", "closure"): 1,
                                    ("n.py::k", "closure"): 1, ("n.py::files", "snapshot_files"): 1,
                                    ("n.py::files", "ParquetFile"): 1}
