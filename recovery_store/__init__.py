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

from .base import DEFAULT_TTL, RecoveryStore, StoreUnavailable, StreamRecord
from .disk import DiskStore, default_store
from .memory import MemoryStore
from .redis import RedisStore  # the module does not import the redis package itself
from .strategies import STRATEGIES, cut_point

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
