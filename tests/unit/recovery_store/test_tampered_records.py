"""``client.resume`` of a record that is not what the client wrote (damaged, or changed by
hand): a ``RecoveryFailed`` naming the store and what is wrong, never a ``JSONDecodeError``,
``KeyError`` or ``TypeError`` from deep inside. A real DiskStore directory and a real
redis-server; resume reads the store before anything is sent, so no HTTP server is needed."""

from __future__ import annotations

import os
import sqlite3
import uuid

import pytest

import streamcoord
from recovery_store import DiskStore, MemoryStore, RedisStore, StreamRecord
from streamcoord import RecoveryFailed

META = {
    "provider": "openai",
    "messages": [{"role": "user", "content": "Say hello"}],
    "options": {"model": "m"},
    "recovery": {"strategy": "paragraph", "max_retries": 3, "keep": True},
}


def _client(store):
    return streamcoord.Client("openai", api_key="sk-test-key", base_url="http://127.0.0.1:9/v1", recovery_store=store)


def _resume_fails(store, where):
    with pytest.raises(RecoveryFailed) as info:
        _client(store).resume("s1")
    assert where in str(info.value)
    assert info.value.__cause__ is not None
    return str(info.value)


def _raw_update(directory, key, value):
    with sqlite3.connect(os.path.join(directory, "cache.db")) as con:
        con.execute("UPDATE Cache SET value = ? WHERE key = ?", (value, key))


DISK_TAMPERS = {
    "negative piece count": (lambda s: s.cache.set("h:s1", dict(s.cache.get("h:s1"), n=-2)), "piece count"),
    "head not a dict": (lambda s: s.cache.set("h:s1", ["garbage"]), "not a dict"),
    "unknown status": (lambda s: s.cache.set("h:s1", dict(s.cache.get("h:s1"), status="weird")), "status"),
    "stamp not a number": (lambda s: s.cache.set("h:s1", dict(s.cache.get("h:s1"), updated_at="x")), "updated_at"),
    "meta not JSON": (lambda s: _raw_update(s.directory, "m:s1", "{not json"), "JSONDecodeError"),
    "text not a str": (lambda s: s.cache.set("p:s1:0", 42), "not text"),
    "meta not a dict": (lambda s: s.cache.set("m:s1", "meta"), "meta"),
    "no provider": (lambda s: s.cache.set("m:s1", {k: v for k, v in META.items() if k != "provider"}), "provider"),
    "messages not a list": (lambda s: s.cache.set("m:s1", dict(META, messages="hi")), "messages"),
    "messages missing": (lambda s: s.cache.set("m:s1", {k: v for k, v in META.items() if k != "messages"}), "messages"),
    "options not a dict": (lambda s: s.cache.set("m:s1", dict(META, options=[1])), "options"),
    "unknown strategy": (lambda s: s.cache.set("m:s1", dict(META, recovery={"strategy": "?"})), "strategy"),
    "options the adapter refuses": (lambda s: s.cache.set("m:s1", dict(META, options={"bogus": 1})), "bogus"),
}


@pytest.mark.parametrize("tamper", DISK_TAMPERS.values(), ids=list(DISK_TAMPERS))
def test_resume_of_a_tampered_disk_record_raises_recovery_failed_naming_the_directory(tmp_path, tamper):
    change, what = tamper
    with DiskStore(tmp_path / "store") as store:
        store.start("s1", META)
        store.append("s1", "Hello")
        stream = _client(store).resume("s1")  # the record as written resumes
        stream.close()
        change(store)
        assert what in _resume_fails(store, str(tmp_path / "store"))


def test_resume_of_a_store_whose_cache_db_was_overwritten_raises_recovery_failed(tmp_path, monkeypatch):
    directory = tmp_path / "recovery"
    with DiskStore(directory) as store:
        store.start("s1", META)
    (directory / "cache.db").write_bytes(os.urandom(8192))
    monkeypatch.setenv("STREAMCOORD_RECOVERY_DIR", str(directory))
    monkeypatch.setattr("streamcoord._recovery._default_store", None)
    with pytest.raises(RecoveryFailed, match="cannot be opened") as info:
        _client(None).resume("s1")
    assert str(directory) in str(info.value) and "delete" in str(info.value)


def test_resume_from_a_redis_that_is_down_raises_recovery_failed_naming_it():
    with socket_closed_port() as port:
        store = RedisStore(f"redis://:hunter2pass@127.0.0.1:{port}/0")
        message = _resume_fails(store, f"127.0.0.1:{port}")
    assert "hunter2pass" not in message


class socket_closed_port:
    """A loopback port nobody listens on (bound, never listening, so it stays unused)."""

    def __enter__(self):
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc):
        self._sock.close()


REDIS_TAMPERS = {
    "stamp not a number": ("head", "updated_at", b"yesterday", "updated_at"),
    "meta not JSON": ("head", "meta", b"{not json", "meta"),
    "text not UTF-8": ("text", None, b"\xff\xfe\xfa", "text"),
    "unknown status": ("head", "status", b"weird", "status"),
    "meta not a dict": ("head", "meta", b"[1, 2]", "meta"),
}


@pytest.mark.parametrize("tamper", REDIS_TAMPERS.values(), ids=list(REDIS_TAMPERS))
def test_resume_of_a_tampered_redis_record_raises_recovery_failed_naming_the_store(redis_url, tamper):
    key, field, value, what = tamper
    prefix = f"test:{uuid.uuid4().hex}:"
    with RedisStore(redis_url, prefix=prefix) as store:
        store.start("s1", META)
        store.append("s1", "Hello")
        _client(store).resume("s1").close()
        if key == "head":
            store.client.hset(f"{prefix}s1:head", field, value)
        else:
            store.client.set(f"{prefix}s1:text", value)
        assert what in _resume_fails(store, "RedisStore(")


class _ForgetfulStore(MemoryStore):
    """A store of the user's own whose load returns what it should not."""

    def __init__(self, loaded):
        super().__init__()
        self.loaded = loaded

    def load(self, stream_id):
        return self.loaded


@pytest.mark.parametrize("loaded, what", [
    ({"text": "Hello"}, "not a StreamRecord"),
    (StreamRecord("s1", META, b"Hello", "streaming", 1.0), "text is a bytes"),
    (StreamRecord("s1", META, "Hello", "streaming", "now"), "updated_at"),
], ids=["a dict", "bytes text", "a stamp that is not a number"])
def test_resume_from_a_custom_store_whose_load_returns_a_bad_record_raises_recovery_failed(loaded, what):
    assert what in _resume_fails(_ForgetfulStore(loaded), "MemoryStore(")
