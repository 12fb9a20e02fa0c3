"""The adapter protocol, re-exported: it lives in ``streamcoord._adapter`` (public as
``streamcoord.Adapter``, ``streamcoord.EventParser``, ``streamcoord.HTTPRequest``), so that
``adapters`` depends on ``streamcoord`` and never the other way round."""

from streamcoord._adapter import (  # noqa: F401
    CONTINUE_INSTRUCTION,
    REDACTED,
    Adapter,
    EventParser,
    HTTPRequest,
    ProviderSetting,
    __all__,  # noqa: F401
    bearer_headers,
    error_message,
    json_object,
    json_scan_once,
    redact_headers,
    validate_messages,
)
