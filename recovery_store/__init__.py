"""Persistence for stream recovery: where partial answers live until a stream resumes.

Pass a store as ``streamcoord.Client(recovery_store=...)``:

* :class:`DiskStore` (the default, see :func:`default_store`): a diskcache directory under
  ``$STREAMCOORD_RECOVERY_DIR`` or the user's cache directory; survives a killed process
  and is shared by every process on the machine.
* :class:`MemoryStore`: in-process only; survives a dropped connection, not a dead process.
* :class:`RedisStore`: for several processes or machines; needs ``pip install
  streamcoord[redis]`` (``redis`` is imported only when a ``RedisStore`` is created).

:func:`cut_point` implements the resume strategies in :data:`STRATEGIES`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

from .base import DEFAULT_TTL, RecoveryStore, StoreUnavailable, StreamRecord
from .strategies import STRATEGIES, cut_point

if TYPE_CHECKING:
    from .disk import DiskStore, default_store
    from .memory import MemoryStore
    from .redis import RedisStore

# The stores are imported when first named: ``import streamcoord`` never pays for
# diskcache (which imports django.core.cache when Django is installed).
_STORES: Dict[str, str] = {
    "DiskStore": ".disk",
    "MemoryStore": ".memory",
    "RedisStore": ".redis",  # the module does not import the redis package itself
    "default_store": ".disk",
}


def __getattr__(name: str) -> Any:  # PEP 562
    module = _STORES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_STORES))


__all__ = [
    "DEFAULT_TTL",
    "DiskStore",
    "MemoryStore",
    "RecoveryStore",
    "RedisStore",
    "STRATEGIES",
    "StoreUnavailable",
    "StreamRecord",
    "cut_point",
    "default_store",
]
