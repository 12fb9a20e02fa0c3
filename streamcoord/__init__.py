"""streamcoord: stream chat answers from LLM providers to plain synchronous code.

    import streamcoord

    for chunk in streamcoord.stream_chat("openai", messages, model="gpt-4o-mini"):
        print(chunk.content, end="", flush=True)

See ``Client``, ``ChatStream``, ``Chunk``, ``StreamingCoordinator`` and ``streamcoord.errors``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from streamcoord._adapter import Adapter, EventParser, HTTPRequest
from streamcoord._chunk import Chunk
from streamcoord._client import Client, new_session, stream_chat
from streamcoord._config import Retry, Timeout
from streamcoord._logging import enable_logging
from streamcoord._registry import names as adapter_names
from streamcoord._stream import ChatStream
from streamcoord.errors import (
    APIError,
    AuthenticationError,
    CallbackError,
    ChunkValidationError,
    ConnectionLost,
    ProtocolError,
    RateLimitError,
    RecoveryFailed,
    ServerError,
    StreamcoordError,
    StreamError,
    StreamTimeout,
)

if TYPE_CHECKING:
    from streamcoord import events  # typed stream events: stream.events()
    from streamcoord._coordinator import StreamHandle, StreamingCoordinator
    from streamcoord._stream_metrics import StreamMetrics
    from streamcoord._telemetry import instrument, uninstrument

__version__ = "0.1.0"

# Imported when first named (PEP 562), so that a script that only streams pays for what it
# uses: name -> (module, attribute; None for the module itself).
_LAZY: Dict[str, Tuple[str, Optional[str]]] = {
    "StreamHandle": ("streamcoord._coordinator", "StreamHandle"),
    "StreamMetrics": ("streamcoord._stream_metrics", "StreamMetrics"),
    "StreamingCoordinator": ("streamcoord._coordinator", "StreamingCoordinator"),
    "events": ("streamcoord.events", None),
    "instrument": ("streamcoord._telemetry", "instrument"),
    "uninstrument": ("streamcoord._telemetry", "uninstrument"),
}

__all__ = [
    "APIError",
    "Adapter",
    "AuthenticationError",
    "CallbackError",
    "ChatStream",
    "Chunk",
    "ChunkValidationError",
    "Client",
    "ConnectionLost",
    "EventParser",
    "HTTPRequest",
    "ProtocolError",
    "RateLimitError",
    "RecoveryFailed",
    "Retry",
    "ServerError",
    "StreamError",
    "StreamHandle",
    "StreamMetrics",
    "StreamTimeout",
    "StreamcoordError",
    "StreamingCoordinator",
    "Timeout",
    "adapter_names",
    "enable_logging",
    "events",
    "instrument",
    "new_session",
    "stream_chat",
    "uninstrument",
]


def __getattr__(name: str) -> Any:  # PEP 562
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(where[0])
    value = module if where[1] is None else getattr(module, where[1])
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
