"""What the suite takes from the machine, in one place: where the conformance recordings
are, and the reason (or ``None``) for each group of tests that skips when a service is
missing. The fixtures skip with these reasons, and the run's header lists them once."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import List, Optional

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "CONFORMANCE_DIR",
    "CONFORMANCE_ENV",
    "browser_missing",
    "check_conformance_dir",
    "redis_missing",
    "report_lines",
    "sdks_missing",
]

CONFORMANCE_ENV = "STREAMCOORD_CONFORMANCE_DIR"
# The recordings live in the repository (tests/conformance/), so every clone runs them;
# the variable points the suite at another copy.
CONFORMANCE_DIR = Path(os.environ.get(CONFORMANCE_ENV) or Path(__file__).resolve().parents[1] / "conformance")
# The official SDKs tests/differential/ compares with (each module's tests skip without it).
OFFICIAL_SDKS = {"openai": "openai", "anthropic": "anthropic", "google-genai": "google.genai",
                 "mistralai": "mistralai", "ollama": "ollama"}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def check_conformance_dir() -> str:
    """A description of the corpus; ``ValueError`` saying what to fix when it is not there
    (a missing corpus fails the run: it is part of the repository, never skipped)."""
    manifest, cases = CONFORMANCE_DIR / "MANIFEST.json", CONFORMANCE_DIR / "SSE_CASES.md"
    if not manifest.is_file() or not cases.is_file():
        where = f"${CONFORMANCE_ENV}={os.environ[CONFORMANCE_ENV]}" if os.environ.get(CONFORMANCE_ENV) else str(
            CONFORMANCE_DIR)
        raise ValueError(f"no conformance corpus (MANIFEST.json and SSE_CASES.md) in {where}: "
                         f"restore tests/conformance/ from git, or unset {CONFORMANCE_ENV}")
    streams = len(json.loads(manifest.read_text(encoding="utf-8"))["files"])
    sse_cases = len(json.loads(re.search(r"```json\n(.*?)\n```", cases.read_text(encoding="utf-8"), re.S).group(1)))
    return f"{streams} recorded streams and {sse_cases} SSE cases from {CONFORMANCE_DIR}"


def redis_missing() -> Optional[str]:
    if importlib.util.find_spec("redis") is None:
        return "the redis package (extra streamcoord[redis]) is not installed"
    if not os.environ.get("REDIS_URL") and shutil.which("redis-server") is None:
        return "no redis-server on PATH and no $REDIS_URL"
    return None


def browser_missing() -> Optional[str]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} missing: install Debian's chromium and chromium-driver (.ci/run does)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium (extra streamcoord[test]) is not installed"
    return None


def sdks_missing() -> Optional[str]:
    missing = [name for name, module in OFFICIAL_SDKS.items() if not _importable(module)]
    if missing:
        return f"{', '.join(missing)} not installed (extra streamcoord[differential])"
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package (google) that is not there
        return False


def report_lines() -> List[str]:
    """The run's header: what the conformance tests read, and what is skipped and why."""
    lines = ["conformance: " + check_conformance_dir()]
    skipped = [(what, reason) for what, reason in (
        ("RedisStore tests", redis_missing()), ("browser test of the web examples", browser_missing()),
        ("differential tests against the official SDKs", sdks_missing()),
    ) if reason]
    if skipped:
        lines += [f"SKIPPED here: {what}: {reason}" for what, reason in skipped]
    else:
        lines.append("nothing skipped for a missing service or SDK (redis-server, chromium, the SDKs found)")
    return lines
