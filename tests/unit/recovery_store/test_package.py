"""The recovery_store package surface, and RedisStore details that need no server."""

from __future__ import annotations

import sys

import pytest

import recovery_store


def test_the_public_names_are_exported_behind_a_sorted_all():
    expected = {
        "DEFAULT_TTL",
        "DiskStore",
        "MemoryStore",
        "RecoveryStore",
        "RedisStore",
        "STRATEGIES",
        "StoreUnavailable",
        "StreamRecord",
        "cut_point",
        "default_store",
    }
    assert set(recovery_store.__all__) == expected
    assert recovery_store.__all__ == sorted(recovery_store.__all__)
    for name in expected:
        assert getattr(recovery_store, name) is not None


def test_the_default_ttl_is_24_hours():
    assert recovery_store.DEFAULT_TTL == 86400.0
    assert recovery_store.MemoryStore().ttl == 86400.0


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
def test_a_non_positive_or_infinite_ttl_is_a_value_error(ttl):
    with pytest.raises(ValueError, match="ttl"):
        recovery_store.MemoryStore(ttl)


def test_importing_the_package_does_not_import_redis():
    import subprocess

    code = "import sys, recovery_store; print('redis' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(recovery_store.__file__).parent.parent),
    )
    assert out.stdout.strip() == "False"


def test_redis_store_without_the_redis_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # makes "import redis" fail
    with pytest.raises(ImportError, match=r"pip install streamcoord\[redis\]"):
        recovery_store.RedisStore()


def test_redis_store_repr_hides_the_password():
    pytest.importorskip("redis")
    store = recovery_store.RedisStore("redis://user:s3cret@localhost:6379/0")
    try:
        assert "s3cret" not in repr(store)
        assert "user:***@localhost" in repr(store)
    finally:
        store.close()
