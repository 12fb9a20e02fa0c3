"""Resuming across processes: a child process streams with recovery on and is SIGKILLed
mid-answer; another process takes the stored record up with ``client.resume`` and the
continuation request finishes the answer. Once through a ``DiskStore`` directory, once
through a shared ``RedisStore``.
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
from pathlib import Path

import pytest

from recovery_store import DiskStore
from tests.loopback.test_recovery import (
    BROKEN,
    BROKEN_PIECES,
    FULL,
    KEPT,
    MAX_TOKENS,
    MESSAGES,
    REST_PIECES,
    assert_continuation_carries,
    consumer_view,
    continuation_response,
)
from tests.support.fakeserver import openai_text
from tests.unit.recovery_store.conftest import redis_url  # noqa: F401 - the fixture: a throwaway redis-server

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 30.0  # a bound for a broken test, never reached by a passing one

# Process A: stream with recovery on and print each chunk's content as a JSON line.
STREAM_SCRIPT = """
import json, sys
import streamcoord
from recovery_store import DiskStore, RedisStore

kind, where, base_url, stream_id, strategy = sys.argv[1:6]
store = DiskStore(where) if kind == "disk" else RedisStore(where, prefix=sys.argv[6])
# A short lease: the resumer follows the killed process until its lease runs out.
client = streamcoord.Client("openai", api_key="sk-test", base_url=base_url, recovery_store=store, lease_ttl=1)
stream = client.stream_chat(
    json.loads(sys.argv[7]), model="gpt-4o-mini", max_tokens=int(sys.argv[8]), stream_recovery=True,
    stream_id=stream_id, recovery={"strategy": strategy}, timeout=60,
)
for chunk in stream:
    if chunk.content:
        print(json.dumps(chunk.content), flush=True)
print(json.dumps({"unexpected_end": stream.text}), flush=True)
"""

# Process B: resume from a RedisStore and print every chunk (content and metadata), then the text.
RESUME_SCRIPT = """
import json, sys
import streamcoord
from recovery_store import RedisStore

url, prefix, base_url, stream_id, offset = sys.argv[1:6]
client = streamcoord.Client("openai", api_key="sk-test", base_url=base_url,
                            recovery_store=RedisStore(url, prefix=prefix), lease_ttl=1,
                            max_retries=streamcoord.Retry(2, sleep=lambda seconds: None))
stream = client.resume(stream_id, offset=int(offset))
for chunk in stream:
    print(json.dumps({"content": chunk.content, "metadata": chunk.metadata}), flush=True)
print(json.dumps({"text": stream.text}), flush=True)
"""


def spawn(script, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)], cwd=str(REPO_ROOT), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_json_lines(proc, count, keep_reading=False):
    """The first ``count`` JSON lines the child prints (fails, with its stderr, if they do
    not come within CHILD_TIMEOUT). A reader thread, because a buffered pipe may already
    hold the next lines when ``select`` says there is nothing more to read. With
    ``keep_reading``, the next call goes on with the next lines (one reader per child)."""
    lines_read = getattr(proc, "lines_read", None) if keep_reading else None
    if lines_read is None:
        lines_read = proc.lines_read = queue.Queue()
        proc.reader = threading.Thread(
            target=lambda: [lines_read.put(line) for line in proc.stdout] + [lines_read.put("")],
            name="child-stdout", daemon=True)
        proc.reader.start()
    lines = []
    deadline = time.monotonic() + CHILD_TIMEOUT
    while len(lines) < count:
        try:
            line = lines_read.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            proc.kill()
            pytest.fail(f"child printed {lines} and then nothing; stderr: {proc.stderr.read()[-2000:]}")
        if not line:
            pytest.fail(f"child exited after {lines}; stderr: {proc.stderr.read()[-2000:]}")
        lines.append(json.loads(line))
    return lines


@pytest.fixture
def children():
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(CHILD_TIMEOUT)
        if hasattr(proc, "reader"):
            proc.reader.join(CHILD_TIMEOUT)  # EOF once the child is gone
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def kill_mid_stream(server, children, kind, where, stream_id, strategy, prefix=""):
    """Process A streams until the server stalls, shows BROKEN, and is SIGKILLed."""
    proc = spawn(STREAM_SCRIPT, kind, where, server.base_url + "/v1", stream_id, strategy, prefix,
                 json.dumps(MESSAGES), MAX_TOKENS)
    children.append(proc)
    seen = read_json_lines(proc, len(BROKEN_PIECES))
    assert "".join(seen) == BROKEN
    proc.kill()
    proc.wait(CHILD_TIMEOUT)
    assert proc.returncode == -9  # SIGKILL: no cleanup code ran in the child
    assert server.connection_closed.wait(5)
    return "".join(seen)


def test_killed_process_is_resumed_from_the_disk_store(server, client, tmp_path, children):
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)),
        continuation_response("openai", FULL[len(BROKEN):]),
    )
    seen = kill_mid_stream(server, children, "disk", tmp_path / "store", "kill-test", "exact")

    with DiskStore(tmp_path / "store") as store:
        record = store.load("kill-test")
        assert record.status == "streaming" and record.text == seen  # persisted before it was printed
        resumed = client(recovery_store=store).resume("kill-test", offset=len(seen))
        chunks = list(resumed)
        assert store.load("kill-test") is None  # completed: the record is gone
    assert consumer_view(chunks, seen) == FULL
    assert resumed.text == FULL
    assert not any(c.metadata.get("replay") for c in chunks)  # the consumer had everything stored
    assert len(server.requests) == 2
    assert_continuation_carries("openai", server.requests[0], server.requests[1], record.text)


@pytest.mark.parametrize("offset", ["all", "none"])
def test_killed_process_is_resumed_by_another_process_through_redis(server, redis_url, children, offset):  # noqa: F811
    from recovery_store import RedisStore

    prefix = f"test-resume:{uuid.uuid4().hex}:"
    kept = KEPT["paragraph"]
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)),
        continuation_response("openai", FULL[len(kept):]),
    )
    seen = kill_mid_stream(server, children, "redis", redis_url, "kill-test", "paragraph", prefix)
    with RedisStore(redis_url, prefix=prefix) as store:
        record = store.load("kill-test")
        assert record.status == "streaming" and record.text == seen

        shown = seen if offset == "all" else ""
        resumer = spawn(RESUME_SCRIPT, redis_url, prefix, server.base_url + "/v1", "kill-test", len(shown))
        children.append(resumer)
        out, err = resumer.communicate(timeout=CHILD_TIMEOUT)
        assert resumer.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        chunks, final = lines[:-1], lines[-1]
        assert store.load("kill-test") is None  # process B completed the stream: record deleted

    view = shown
    for chunk in chunks:
        rewind = chunk["metadata"].get("recovery", {}).get("rewind", 0)
        view = view[: len(view) - rewind] + chunk["content"]
    assert view == FULL
    assert final == {"text": FULL}
    # The killed process still held the lease: the resume followed its record (the stored
    # text) until the lease ran out, then took it over, rewinding to the paragraph cut a
    # consumer that had more than it (always, with the whole text shown).
    rewinds = [c["metadata"]["recovery"]["rewind"] for c in chunks if "recovery" in c["metadata"]]
    assert rewinds == [len(BROKEN) - len(kept)] if offset == "all" else rewinds in ([], [len(BROKEN) - len(kept)])
    assert len(server.requests) == 2
    assert_continuation_carries("openai", server.requests[0], server.requests[1], kept)
