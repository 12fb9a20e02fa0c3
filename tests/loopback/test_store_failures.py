"""A recovery store that cannot be opened or reached never breaks a stream: ``stream_chat``
goes on without recovery, the answer arrives whole, and a WARNING names the store."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from recovery_store import DiskStore, RedisStore
from tests.conftest import MESSAGES
from tests.support.fakeserver import openai_text

PIECES = ["Hello", ", ", "world"]


def _overwritten_cache_db(path):
    with DiskStore(path):
        pass
    (path / "cache.db").write_bytes(os.urandom(8192))
    return path


def _file_in_place(path):
    path.write_text("not a directory")
    return path / "recovery"


def _locked_directory(path):
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("needs a POSIX user whom permissions apply to (root ignores them)")
    path.mkdir(mode=0o700)
    os.chmod(path, 0)
    return path / "recovery"


BROKEN = {
    "cache.db overwritten with garbage": _overwritten_cache_db,
    "a file where the directory should be": _file_in_place,
    "a directory this user may not enter": _locked_directory,
}


def _open_files_under(path):
    """The files under ``path`` this process holds open (Linux; elsewhere, none are seen)."""
    if not os.path.isdir("/proc/self/fd"):
        return []
    opened = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            opened.append(target)
    return opened


def _warnings_naming(caplog, where):
    return [r for r in caplog.records if r.levelno == logging.WARNING and where in r.getMessage()]


@pytest.mark.parametrize("breakage", BROKEN.values(), ids=list(BROKEN))
def test_a_default_store_that_cannot_be_opened_leaves_stream_chat_without_recovery(
    server, client, tmp_path, monkeypatch, caplog, breakage
):
    directory = breakage(tmp_path / "store")
    monkeypatch.setenv("STREAMCOORD_RECOVERY_DIR", str(directory))
    monkeypatch.setattr("streamcoord._recovery._default_store", None)
    caplog.set_level(logging.WARNING, logger="streamcoord")
    server.enqueue(openai_text(PIECES), openai_text(PIECES))
    c = client("openai")
    for _ in range(2):  # every call, not just the first
        stream = c.stream_chat(MESSAGES, model="m", stream_recovery=True)
        assert "".join(chunk.content for chunk in stream) == "Hello, world"
    assert len(_warnings_naming(caplog, str(directory))) == 2
    assert _open_files_under(tmp_path) == []  # the failed opens left no database file open


def test_a_redis_store_that_is_down_leaves_the_stream_whole_and_warns_naming_it(server, client, caplog):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = unused.getsockname()[1]
        caplog.set_level(logging.WARNING, logger="streamcoord")
        server.enqueue(openai_text(PIECES))
        c = client("openai", recovery_store=RedisStore(f"redis://127.0.0.1:{port}/0"))
        stream = c.stream_chat(MESSAGES, model="m", stream_recovery=True)
        assert "".join(chunk.content for chunk in stream) == "Hello, world"
    assert _warnings_naming(caplog, f"127.0.0.1:{port}")
