"""AWS Signature Version 4 for Bedrock, through botocore (the optional extra ``bedrock``).

Credentials come from botocore's own chain (environment, shared config and credentials
files, profiles, SSO, container and instance roles), resolved once per adapter on the
first request and refreshed by botocore when they expire. Nothing here discovers
credentials by hand. Each request is signed just before it is sent, so retries and
continuations carry their own time and signature.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Dict

from streamcoord.errors import AuthenticationError

__all__ = ["INSTALL_HINT", "SigV4Signer", "botocore_available", "request_body"]

INSTALL_HINT = (
    "pip install streamcoord[bedrock]" if sys.version_info >= (3, 10)
    # botocore supports urllib3 2 (which streamcoord needs) only on Python 3.10+
    else "botocore with urllib3 2 needs Python 3.10 or later (or use a Bedrock API key)"
)
SERVICE = "bedrock"


def botocore_available() -> bool:
    try:
        import botocore.auth  # noqa: F401
    except ImportError:
        return False
    return True


def request_body(body: Dict[str, Any]) -> bytes:
    """The exact bytes sent, which the signature covers (compact JSON, UTF-8)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


class SigV4Signer:
    """Signs requests for one region with the credentials botocore finds."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._lock = threading.Lock()
        self._credentials: Any = None

    def sign(self, method: str, url: str, headers: Dict[str, str], body: bytes) -> Dict[str, str]:
        """``headers`` plus ``X-Amz-Date``, ``Authorization`` (and ``X-Amz-Security-Token``
        for temporary credentials)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._frozen_credentials()
        aws_request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(credentials, SERVICE, self.region).add_auth(aws_request)
        return dict(aws_request.headers.items())

    def _frozen_credentials(self) -> Any:
        from botocore.exceptions import BotoCoreError

        try:
            with self._lock:
                if self._credentials is None:
                    import botocore.session

                    self._credentials = botocore.session.Session().get_credentials()
                credentials = self._credentials
            if credentials is None:
                raise AuthenticationError(_NO_CREDENTIALS, provider="bedrock")
            return credentials.get_frozen_credentials()  # refreshed here when they expire
        except BotoCoreError as exc:  # a broken profile, an expired SSO session, ...
            raise AuthenticationError(f"bedrock: AWS credentials could not be loaded: {exc}", provider="bedrock") from None


_NO_CREDENTIALS = (
    "bedrock: no AWS credentials found (botocore looked in the environment, ~/.aws/config and "
    "~/.aws/credentials, SSO and instance roles); configure them, or pass a Bedrock API key as "
    "api_key= or AWS_BEARER_TOKEN_BEDROCK"
)

