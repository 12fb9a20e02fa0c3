"""RedisStore specifics against a real server (skipped, with the reason, when none is available)."""

from __future__ import annotations

import time
import uuid

import pytest


@pytest.fixture
def redis_store(redis_url):
    from recovery_store import RedisStore

    store = RedisStore(redis_url, ttl=60.0, prefix=f"test:{uuid.uuid4().hex}:")
    yield store
    store.close()


def test_append_is_visible_to_a_second_redis_store(redis_url, redis_store):
    from recovery_store import RedisStore

    redis_store.start("s1", {"provider": "openai"})
    redis_store.append("s1", "Hello")
    with RedisStore(redis_url, prefix=redis_store.prefix) as other:
        assert other.load("s1").text == "Hello"
        other.append("s1", " there")
    assert redis_store.load("s1").text == "Hello there"


def test_text_grows_with_append_and_both_keys_carry_the_ttl(redis_store):
    r = redis_store.client
    redis_store.start("s1", {"provider": "openai"})
    for _ in range(100):
        redis_store.append("s1", "ab")
    head, text = f"{redis_store.prefix}s1:head", f"{redis_store.prefix}s1:text"
    assert r.type(text) == b"string" and r.strlen(text) == 200
    assert 0 < r.pttl(head) <= 60_000 and 0 < r.pttl(text) <= 60_000


def test_redis_records_expire_in_real_time(redis_url):
    from recovery_store import RedisStore

    # The ttl is long enough for a loaded machine to get from start to append (0.05 s was
    # not), and expiry is awaited with a bound instead of a fixed sleep.
    with RedisStore(redis_url, ttl=0.5, prefix=f"test:{uuid.uuid4().hex}:") as store:
        store.start("s1", {"provider": "openai"})
        store.append("s1", "soon gone")
        deadline = time.monotonic() + 5
        while store.client.exists(f"{store.prefix}s1:head", f"{store.prefix}s1:text"):
            assert time.monotonic() < deadline, "Redis did not expire the record"
            time.sleep(0.05)
        assert store.load("s1") is None


def test_a_client_passed_in_is_used_and_left_open(redis_url):
    import redis

    from recovery_store import RedisStore

    client = redis.Redis.from_url(url=redis_url, decode_responses=True)
    with RedisStore(client=client, prefix=f"test:{uuid.uuid4().hex}:") as store:
        store.start("s1", {"provider": "openai"})
        store.append("s1", "ünïcode 😀")
        assert store.load("s1").text == "ünïcode 😀"
    assert client.ping()
    client.close()
