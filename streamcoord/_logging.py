"""Logging: the ``streamcoord`` logger, with ``stream_id`` and ``provider`` on every record.

Nothing logged here ever holds an API key: requests are logged by method and URL only
(keys travel in headers, which are never logged), and error bodies are the provider's.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, MutableMapping, Optional, Tuple, Union

__all__ = ["LOG_FORMAT", "StreamLogger", "enable_logging", "logger"]

logger = logging.getLogger("streamcoord")

LOG_FORMAT = "%(asctime)s %(levelname)s streamcoord [%(stream_id)s %(provider)s] %(message)s"


class _Defaults(logging.Filter):
    """Gives records that lack them (e.g. logged by a user's code) empty stream fields,
    so a handler with ``LOG_FORMAT`` never fails on a missing key."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "stream_id"):
            record.stream_id = "-"
        if not hasattr(record, "provider"):
            record.provider = "-"
        return True


class StreamLogger(logging.LoggerAdapter):
    """A logger adapter bound to one stream."""

    def __init__(self, stream_id: str, provider: str) -> None:
        super().__init__(logger, {"stream_id": stream_id, "provider": provider})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> Tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = self.extra
        return msg, kwargs


def enable_logging(level: Union[int, str] = logging.DEBUG, stream: Optional[Any] = None) -> logging.Handler:
    """Show streamcoord's log on stderr (or ``stream``), each line with stream_id and provider.

    The Python form of the seed's ``config :logger, metadata: [:stream_id, :provider]``.
    It sets the ``streamcoord`` logger's level; calling it again replaces its handler.
    Returns the handler, so ``logging.getLogger("streamcoord").removeHandler(h)`` undoes it.
    """
    global _handler
    if _handler is not None:  # calling it again replaces the handler rather than doubling lines
        logger.removeHandler(_handler)
    handler = _handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_Defaults())
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


_handler: Optional[logging.Handler] = None
