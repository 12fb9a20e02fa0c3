"""streamcoord: stream chat answers from LLM providers to plain synchronous code.

    import streamcoord

    for chunk in streamcoord.stream_chat("openai", messages, model="gpt-4o-mini"):
        print(chunk.content, end="", flush=True)

See ``Client``, ``ChatStream``, ``Chunk``, ``StreamingCoordinator`` and ``streamcoord.errors``.
"""

from streamcoord import events  # typed stream events: stream.events()
from streamcoord._adapter import Adapter, EventParser, HTTPRequest
from streamcoord._chunk import Chunk
from streamcoord._client import Client, new_session, stream_chat
from streamcoord._config import Retry, Timeout
from streamcoord._coordinator import StreamHandle, StreamingCoordinator
from streamcoord._logging import enable_logging
from streamcoord._metrics import StreamMetrics
from streamcoord._registry import names as adapter_names
from streamcoord._stream import ChatStream
from streamcoord._telemetry import instrument, uninstrument
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

__version__ = "0.1.0"

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
