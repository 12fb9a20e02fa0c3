"""Helpers of the transport tests: a client for a raw server, reading a stream, counting sockets."""

from __future__ import annotations

import os

import streamcoord
from tests.conftest import API_KEY, MESSAGES

__all__ = ["client_for", "open_sockets", "read_all"]


def open_sockets() -> int:
    """Sockets this process holds (Linux: /proc/self/fd); -1 where that cannot be read."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    count = 0
    for name in names:
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return count


def client_for(base_url: str, session=None, retries: int = 0, provider: str = "openai", **kwargs):
    return streamcoord.Client(
        provider, api_key=API_KEY, base_url=base_url + ("/v1" if provider == "openai" else ""),
        session=session, max_retries=streamcoord.Retry(retries, sleep=lambda s: None), **kwargs,
    )


def read_all(client, **options) -> str:
    with client.stream_chat(MESSAGES, model="m", **options) as stream:
        for _ in stream:
            pass
        return stream.text
