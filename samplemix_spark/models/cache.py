"""One copy per Python process of each loaded model or tokenizer.

Executors call ``cached`` from pandas UDFs. Classic Spark reuses Python workers
across tasks, and the embedded engine runs UDFs on several threads of one
interpreter; the lock makes those threads share one copy instead of each
loading its own.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")

_objects: dict[Hashable, object] = {}
_lock = threading.Lock()


def cached(key: Hashable, factory: Callable[[], T]) -> T:
    """Return the object for ``key``, building it with ``factory`` the first time."""
    with _lock:
        if key not in _objects:
            _objects[key] = factory()
        return _objects[key]  # type: ignore[return-value]
