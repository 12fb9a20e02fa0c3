"""Live streams across real processes sharing a store: a generation started in process A is
followed from another process; A is SIGKILLed mid-answer and the readers that attach
afterwards finish it with one continuation, taken over once however many attach at once;
two concurrent resumes of one id generate once; ``cancel_stream`` from another process
stops the producer within a second. The fake provider runs in this process and counts the
generation requests.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid

import pytest

from recovery_store import DiskStore
from tests.loopback.test_live_streams import MESSAGES, gated_answer, wait_for_text
from tests.loopback.test_recovery import (
    BROKEN,
    BROKEN_PIECES,
    FULL,
    KEPT,
    REST_PIECES,
    assert_continuation_carries,
    continuation_response,
)
from tests.loopback.test_resume_processes import CHILD_TIMEOUT, REPO_ROOT, children  # noqa: F401
from tests.support.fakeserver import openai_text
from tests.unit.recovery_store.conftest import redis_url  # noqa: F401 - the fixture: a throwaway redis-server

LEASE_TTL = 1.0  # as test_live_streams: short, but renewed in time on a loaded machine

# One child: start a live stream, follow one (attach or resume), or stream with recovery;
# each prints JSON lines.
LIVE_SCRIPT = """
import json, sys, time
import streamcoord
from recovery_store import DiskStore, RedisStore

cfg = json.loads(sys.argv[1])
store = DiskStore(cfg["where"]) if cfg["kind"] == "disk" else RedisStore(cfg["where"], prefix=cfg["prefix"])
client = streamcoord.Client("openai", api_key="sk-test", base_url=cfg["base_url"], recovery_store=store,
                            lease_ttl=cfg["lease_ttl"], max_retries=streamcoord.Retry(2, sleep=lambda s: None))
action, sid = cfg["action"], cfg["stream_id"]
recovery = {"strategy": cfg["strategy"], "keep": cfg.get("keep", False)}
if action == "start":
    handle = client.start(cfg["messages"], stream_id=sid, model="gpt-4o-mini", max_tokens=200,
                          recovery=recovery)
    print(json.dumps({"started": True}), flush=True)
    handle.wait(60)
    print(json.dumps({"done": handle.text, "at": time.time()}), flush=True)
elif action == "stream":
    stream = client.stream_chat(cfg["messages"], model="gpt-4o-mini", max_tokens=200, stream_recovery=True, stream_id=sid,
                                recovery=recovery)
    for chunk in stream:
        if chunk.content:
            print(json.dumps(chunk.content), flush=True)
else:
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # go: all the readers at once
    stream = getattr(client, action)(sid, offset=cfg.get("offset", 0))
    chunks = [[c.content, (c.metadata.get("recovery") or {}).get("rewind", 0)] for c in stream]
    print(json.dumps({"chunks": chunks, "finish_reason": stream.finish_reason}), flush=True)
"""


def _shared(kind, request, tmp_path):
    """(config for the children, the store as this process opens it)."""
    if kind == "disk":
        config = {"kind": "disk", "where": str(tmp_path / "store"), "prefix": ""}
        store = DiskStore(config["where"])
    else:
        from recovery_store import RedisStore

        url = request.getfixturevalue("redis_url")
        config = {"kind": "redis", "where": url, "prefix": f"test-live:{uuid.uuid4().hex}:"}
        store = RedisStore(url, prefix=config["prefix"])
    return config, store


# Multi-process tests are slow (each child imports streamcoord): every store kind where
# it matters, one elsewhere.
@pytest.fixture(params=["disk", "redis"])
def shared(request, tmp_path):
    config, store = _shared(request.param, request, tmp_path)
    yield config, store
    store.close()


@pytest.fixture
def shared_disk(request, tmp_path):
    config, store = _shared("disk", request, tmp_path)
    yield config, store
    store.close()


@pytest.fixture
def shared_redis(request, tmp_path):
    config, store = _shared("redis", request, tmp_path)
    yield config, store
    store.close()


def child(children, server, config, action, **extra):  # noqa: F811 - children is the fixture
    cfg = dict(config, action=action, base_url=server.base_url + "/v1", lease_ttl=LEASE_TTL,
               stream_id="live", strategy="paragraph", messages=MESSAGES)
    cfg.update(extra)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", LIVE_SCRIPT, json.dumps(cfg)], cwd=str(REPO_ROOT), env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    children.append(proc)
    return proc


def next_line(proc):
    """The child's next JSON line (one reader thread per child, so no line is lost); fails
    with its stderr if none comes within CHILD_TIMEOUT."""
    if not hasattr(proc, "lines"):
        proc.lines = queue.Queue()
        proc.reader = threading.Thread(
            target=lambda: [proc.lines.put(line) for line in proc.stdout] + [proc.lines.put("")],
            name="child-stdout", daemon=True)
        proc.reader.start()
    try:
        line = proc.lines.get(timeout=CHILD_TIMEOUT)
    except queue.Empty:
        proc.kill()
        line = ""
    if not line:
        proc.kill()
        pytest.fail(f"the child printed nothing more; stderr: {proc.stderr.read()[-2000:]}")
    return json.loads(line)


def go(*procs):
    """Let the waiting readers go, all at once (once each has imported and opened its store)."""
    for proc in procs:
        assert next_line(proc) == {"ready": True}
    for proc in procs:
        proc.stdin.write("\n")
        proc.stdin.flush()


def view_of(result, start=""):
    """What a consumer that had ``start`` shows after the child's chunks."""
    view = start
    for content, rewind in result["chunks"]:
        view = view[: len(view) - rewind] + content
    return view


def test_a_generation_started_in_one_process_is_followed_from_another(server, client, shared_redis, children):  # noqa: F811
    config, store = shared_redis
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    producer = child(children, server, config, "start")
    assert next_line(producer) == {"started": True}
    wait_for_text(store, "live", BROKEN)
    here = client(recovery_store=store, lease_ttl=LEASE_TTL)
    readers = {k: here.attach("live", offset=k) for k in (0, len(BROKEN) // 2)}
    gate.set()
    for k, reader in readers.items():
        chunks = list(reader)
        assert "".join(c.content for c in chunks) == FULL[k:] and reader.finish_reason == "stop"
    done = next_line(producer)
    assert done["done"] == FULL
    assert len(server.requests) == 1


def test_a_killed_producer_is_taken_over_once_by_two_readers_attaching_at_once(server, shared, children):  # noqa: F811
    config, store = shared
    kept = KEPT["paragraph"]
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)),
        continuation_response("openai", FULL[len(kept):]),
    )
    producer = child(children, server, config, "start")
    assert next_line(producer) == {"started": True}
    wait_for_text(store, "live", BROKEN)
    readers = [child(children, server, config, "attach", offset=k) for k in (0, len(BROKEN))]
    producer.kill()
    producer.wait(CHILD_TIMEOUT)
    assert producer.returncode == -9 and server.connection_closed.wait(5)
    assert store.leased("live"), "the dead producer's lease is still running"
    go(*readers)
    results = [next_line(reader) for reader in readers]
    assert [view_of(results[0]), view_of(results[1], BROKEN)] == [FULL, FULL]
    assert [r["finish_reason"] for r in results] == ["stop", "stop"]
    # The reader that had BROKEN is rewound to the takeover's cut if it read the record
    # between the cut and the continuation's text; else the text only grew, for it.
    assert [rewind for _, rewind in results[1]["chunks"] if rewind] in ([], [len(BROKEN) - len(kept)])
    assert len(server.requests) == 2, "one generation and exactly one continuation"
    assert_continuation_carries("openai", server.requests[0], server.requests[1], kept)


def test_two_concurrent_resumes_from_two_processes_generate_once(server, shared_disk, children):  # noqa: F811
    config, store = shared_disk
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)),
        continuation_response("openai", FULL[len(BROKEN):]),
    )
    streamer = child(children, server, config, "stream", strategy="exact", keep=True)
    assert "".join(next_line(streamer) for _ in BROKEN_PIECES) == BROKEN
    streamer.kill()
    streamer.wait(CHILD_TIMEOUT)
    assert server.connection_closed.wait(5)
    resumers = [child(children, server, config, "resume", strategy="exact", keep=True) for _ in range(2)]
    go(*resumers)
    results = [next_line(r) for r in resumers]
    assert [view_of(r) for r in results] == [FULL, FULL]
    assert [r["finish_reason"] for r in results] == ["stop", "stop"]
    assert len(server.requests) == 2, "one continuation between the two resumes"
    assert store.load("live").text == FULL, "the stored text was never doubled"


def test_cancel_stream_from_another_process_stops_the_producer_within_a_second(server, client, shared_disk, children):  # noqa: F811
    config, store = shared_disk
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    producer = child(children, server, config, "start")
    assert next_line(producer) == {"started": True}
    wait_for_text(store, "live", BROKEN)
    cancelled_at = time.time()
    client(recovery_store=store).cancel_stream("live")
    done = next_line(producer)
    assert done["done"] == BROKEN
    assert done["at"] - cancelled_at < 1.0, f"the producer stopped {done['at'] - cancelled_at:.2f}s after the cancel"
    assert server.connection_closed.wait(5)
    gate.set()
    assert len(server.requests) == 1


def test_a_recovering_stream_chat_holds_its_id_so_others_follow_it_instead_of_generating(
    server, client, shared, children  # noqa: F811
):
    config, store = shared
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    streamer = child(children, server, config, "stream")
    assert "".join(next_line(streamer) for _ in BROKEN_PIECES) == BROKEN
    assert store.leased("live"), "a plain stream_chat with recovery holds the lease of its id"
    here = client(recovery_store=store, lease_ttl=LEASE_TTL)
    with pytest.raises(ValueError, match=r"another producer.*client\.attach\('live'\)"):
        here.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="live")
    follower, resumed = here.attach("live"), here.resume("live", offset=len(BROKEN))
    gate.set()
    assert "".join(c.content for c in follower) == FULL and follower.finish_reason == "stop"
    assert "".join(c.content for c in resumed) == FULL[len(BROKEN):] and resumed.text == FULL
    assert "".join(next_line(streamer) for _ in REST_PIECES) == FULL[len(BROKEN):]
    assert len(server.requests) == 1, "one generation: the attach and the resume followed it"
