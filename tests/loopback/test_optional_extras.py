"""The optional extras stay optional: a stream without telemetry imports no OpenTelemetry,
and in an environment without opentelemetry and jiter (blocked in a child process) streams
and events work, ``partial_arguments`` is None, and asking for telemetry says what to install."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

CHILD = r'''
import json, sys

BLOCKED = set(sys.argv[1].split(",")) - {""}


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Block())

import streamcoord
from streamcoord.events import ToolCallDelta, ToolCallDone
from tests.support.fakeserver import FakeProvider, sse

def chunk(delta, finish=None):
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

answer = sse([chunk({"content": "Hi"}),
              chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
              chunk({}, "tool_calls")], done=True)
out = {}
with FakeProvider() as server:
    server.enqueue(answer)
    client = streamcoord.Client("openai", api_key="k", base_url=server.base_url + "/v1")
    events = list(client.stream_chat([{"role": "user", "content": "x"}], model="m").events())
    out["partial"] = [e.partial_arguments for e in events if isinstance(e, ToolCallDelta)]
    out["done"] = [e.arguments for e in events if isinstance(e, ToolCallDone)]
out["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"opentelemetry", "jiter"})
for ask in (lambda: streamcoord.Client("openai", api_key="k", telemetry=True), streamcoord.instrument):
    try:
        ask()
        out.setdefault("asked", []).append("ok")
    except ImportError as exc:
        out.setdefault("asked", []).append(str(exc))
streamcoord.uninstrument()
print(json.dumps(out))
'''


def run_child(blocked):
    result = subprocess.run([sys.executable, "-c", CHILD, ",".join(blocked)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_without_opentelemetry_and_jiter_streams_and_events_work_and_telemetry_says_what_to_install():
    out = run_child(["opentelemetry", "jiter"])
    assert out["imported"] == []
    assert out["partial"] == [None, None, None]
    assert out["done"] == [{"city": "Paris"}]
    assert all("pip install 'streamcoord[otel]'" in message for message in out["asked"])


def test_a_stream_without_telemetry_imports_no_opentelemetry():
    pytest.importorskip("opentelemetry")  # installed, yet never imported by a stream that does not ask
    pytest.importorskip("jiter")
    out = run_child([])
    assert out["partial"] == [None, {"city": "Pa"}, {"city": "Paris"}]
    assert out["imported"] == ["jiter"]  # after a whole stream (read as events), before asking for telemetry
    assert out["asked"] == ["ok", "ok"]
