"""The registry of adapters by provider name.

It lives here, beside the adapter protocol, so that ``streamcoord`` never imports the
``adapters`` package at import time: the built-in adapters register themselves when that
package is imported, which the first lookup by name does (like a plugin being loaded).
"""

from __future__ import annotations

import importlib
import threading
from typing import Callable, Dict, List, Union

from streamcoord._adapter import Adapter

__all__ = ["get", "names", "register"]

_lock = threading.Lock()
_registry: Dict[str, Callable[[], Adapter]] = {}
# The package whose import registers the built-in adapters.
BUILTIN_PACKAGE = "adapters"


def _load_builtin() -> None:
    importlib.import_module(BUILTIN_PACKAGE)  # registers them, once; a no-op afterwards


def register(name: str, adapter: Union[Adapter, Callable[[], Adapter]], *, replace: bool = False) -> None:
    """Register ``adapter`` (an instance, a subclass, or a factory) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError("an adapter name must be a non-empty string")
    if isinstance(adapter, Adapter):
        instance = adapter
        factory: Callable[[], Adapter] = lambda: instance  # noqa: E731
    elif callable(adapter):
        factory = adapter
    else:
        raise TypeError(f"register() needs an Adapter instance or a factory, got {adapter!r}")
    with _lock:
        if name in _registry and not replace:
            raise ValueError(f"an adapter is already registered as {name!r}; pass replace=True to replace it")
        _registry[name] = factory


def get(name: str) -> Adapter:
    """The adapter registered as ``name``; ``ValueError`` listing the known names otherwise."""
    _load_builtin()
    with _lock:
        factory = _registry.get(name)
    if factory is None:
        raise ValueError(
            f"unknown provider {name!r}: use one of {', '.join(names())}, "
            "or pass an Adapter instance (see streamcoord.Adapter)"
        )
    adapter = factory()
    if not isinstance(adapter, Adapter):
        raise TypeError(f"the factory registered as {name!r} returned {adapter!r}, not an Adapter")
    return adapter


def names() -> List[str]:
    _load_builtin()
    with _lock:
        return sorted(_registry)
