"""Every call that brings rows to the driver, or reads a table file whole, is listed in docs/scaling.md.

The code is scanned for calls named ``collect``, ``toPandas``, ``toLocalIterator``,
``read_table`` and ``read_row_group`` and counted per enclosing function; the documented table must
list exactly those, so a new one cannot slip in unlisted and a removed one
cannot linger in the docs.
"""

from __future__ import annotations

import ast
import collections
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "samplemix_spark"
CALLS = {"collect", "toPandas", "toLocalIterator", "read_table", "read_row_group"}
ROW = re.compile(r"^\| `([^`]+)` \| (\w+) \| (\d+) \|", re.MULTILINE)


def call_sites(root: Path) -> collections.Counter:
    """(file::function, call) -> how many such calls the function makes (nested functions count as their own)."""
    found: collections.Counter = collections.Counter()
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()

        def visit(node: ast.AST, scope: list[str]) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(child, [*scope, child.name])
                    continue
                if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and child.func.attr in CALLS:
                    found[(f"{where}::{'.'.join(scope) or '<module>'}", child.func.attr)] += 1
                visit(child, scope)

        visit(ast.parse(path.read_text()), [])
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
    assert call_sites(tmp_path) == {("m.py::A.f", "collect"): 1, ("m.py::g.inner", "toPandas"): 1,
                                    ("m.py::g", "toPandas"): 1}
