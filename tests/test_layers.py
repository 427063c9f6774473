"""Imports run one way: report -> evaluation -> mixing -> diversity/quality -> ingest -> tables/engine -> models/config.

Read from the source with ``ast``, so an import inside a function counts as much
as one at the top: a lazy import does not excuse a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "samplemix_spark"

# Highest first. A module may import its own layer and every layer below it.
LAYERS = [
    {"cli", "pipeline", "refresh", "demo"},   # entry points: they wire the layers together
    {"report"},
    {"evaluation"},
    {"mixing"},
    {"diversity", "quality", "scores"},
    {"ingest"},
    {"tables", "engine"},
    {"models", "config", "errors", "hashing"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str | None:
    """The first-level package or module of ``samplemix_spark`` that ``module`` belongs to."""
    parts = module.split(".")
    if parts[0] != "samplemix_spark" or len(parts) == 1:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def _own_part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def test_every_part_of_the_package_has_a_layer():
    parts = {_own_part(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert parts <= set(RANK), f"place {sorted(parts - set(RANK))} in LAYERS"


def test_no_import_reaches_up_a_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _own_part(path)
        if own == "__init__":
            continue
        for module, line in _imports(path):
            target = _part(module)
            if target is not None and target in RANK and RANK[target] < RANK[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} ({own} -> {target})")
    assert not upward, "imports that reach up a layer:\n" + "\n".join(upward)


def test_the_layer_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "lazy.py"
    sample.write_text("def f():\n    from samplemix_spark.evaluation import tune\n")
    assert _imports(sample) == [("samplemix_spark.evaluation", 2)]


def test_the_driver_of_a_run_and_an_evaluation_imports_no_torch():
    """torch is a few hundred MiB of a driver's memory: only the code that runs a model (on executors, or on
    a driver that trains a proxy itself) imports it, lazily."""
    import subprocess
    import sys

    modules = ["samplemix_spark.cli", "samplemix_spark.pipeline", "samplemix_spark.evaluation.evaluate",
               "samplemix_spark.evaluation.tune", "samplemix_spark.evaluation.tune_quadmix",
               "samplemix_spark.evaluation.bimix_swarm", "samplemix_spark.evaluation.fidelity"]
    probe = f"import sys\nfor m in {modules!r}:\n    __import__(m)\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
