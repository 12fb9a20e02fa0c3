"""Logging: the ``streamcoord`` logger, with ``stream_id`` and ``provider`` on every record.

Nothing logged here ever holds an API key: requests are logged by method and URL only
(keys travel in headers, which are never logged), and :class:`ScrubbingFilter`, on every
streamcoord logger, replaces the key of every live stream by ``***`` in each record's
message, arguments and exception, for a server that echoes a key back in an error body.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, MutableMapping, Optional, Tuple, Union

from streamcoord._keys import SCRUBBED, Scrubber, live_secrets

__all__ = ["LOGGER_NAMES", "LOG_FORMAT", "ScrubbingFilter", "StreamLogger", "enable_logging", "logger"]

logger = logging.getLogger("streamcoord")

#: Every logger the library logs to. A logger's filters see only the records logged to it
#: (not its children's), so each one gets the scrubbing filter.
LOGGER_NAMES = ("streamcoord", "streamcoord.recovery_store")

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


class ScrubbingFilter(logging.Filter):
    """Replaces the secrets of every live stream by ``***`` in a record: the message with its
    arguments, and the exception it carries. Runs only for records that will be emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = live_secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
            if any(s in message for s in secrets):
                for secret in secrets:
                    message = message.replace(secret, SCRUBBED)
                record.msg, record.args = message, None
            if record.exc_info and record.exc_info[1] is not None:
                Scrubber(secrets, live=False).exception(record.exc_info[1])
                record.exc_text = None  # formatted again, from the scrubbed exception
        except Exception:  # a record that cannot be checked is not shown as it is
            record.msg, record.args, record.exc_info, record.exc_text = (
                "(a log record that could not be checked for API keys was withheld)", None, None, None
            )
        return True


_scrubbing_filter = ScrubbingFilter()
for _name in LOGGER_NAMES:
    logging.getLogger(_name).addFilter(_scrubbing_filter)


if TYPE_CHECKING:  # generic in typeshed; subscriptable at runtime only from Python 3.11
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter


class StreamLogger(_LoggerAdapter):
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
