"""Checks of the cloud settings that make an address: an AWS region, a Google Cloud location
and project. Each one ends up in a host name or a URL path that carries credentials, so a
value that is not a real name (``attacker.example#``, ``p/../../other``) is refused before
any request, whether it came from an argument or the environment.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Pattern, Sequence

__all__ = ["AWS_REGION", "GOOGLE_LOCATION", "GOOGLE_PROJECT", "PlaceName"]


class PlaceName:
    """One kind of name, its pattern and the examples an error shows."""

    def __init__(self, what: str, pattern: str, examples: str) -> None:
        self.what = what
        self.pattern: Pattern[str] = re.compile(pattern)
        self.examples = examples

    def resolve(self, argument: str, value: Optional[str], env: Sequence[str]) -> Optional[str]:
        """``value`` (the ``argument=`` given) or the first environment variable of ``env``
        that is set, stripped and checked; None when neither gives one."""
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"{argument} must be a str, {self.what} such as {self.examples}, "
                                f"got {type(value).__name__}")
            return self._checked(value, f"the {argument}= argument")
        for name in env:
            found = os.environ.get(name, "")
            if found.strip():
                return self._checked(found, f"the environment variable {name}")
        return None

    def _checked(self, value: str, source: str) -> str:
        name = value.strip()
        if not self.pattern.fullmatch(name):
            raise ValueError(f"{value!r:.80} (from {source}) is not {self.what}: expected one such as {self.examples}")
        return name


# AWS's partitions: aws (us-east-1, ap-southeast-2), aws-us-gov (us-gov-west-1), aws-cn
# (cn-north-1) and the isolated ones (us-iso-east-1, eu-isoe-west-1).
AWS_REGION = PlaceName("an AWS region name", r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}",
                       "'us-east-1', 'eu-central-1', 'us-gov-west-1' or 'cn-north-1'")
# A region (us-central1, europe-west4, northamerica-northeast1), a multi-region (us, eu) or
# global.
GOOGLE_LOCATION = PlaceName("a Google Cloud location", r"[a-z]+(?:-[a-z]+)*[0-9]{1,2}|global|us|eu",
                            "'us-central1', 'europe-west4' or 'global'")
# Google's rules for a project ID: 6 to 30 lowercase letters, digits or hyphens, starting
# with a letter, not ending with a hyphen; a domain-scoped ID (example.com:my-project); or
# the project number.
GOOGLE_PROJECT = PlaceName(
    "a Google Cloud project ID",
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}",
    "'my-project-123', 'example.com:my-project' or a project number",
)
