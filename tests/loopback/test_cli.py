"""The command line, run as a user would: ``python -m streamcoord ...`` in a subprocess."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from streamcoord._demo import DEMO_ANSWER
from tests.support.fakeserver import openai_text

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(*args, env=None, timeout=60):
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    environ.pop("OPENAI_API_KEY", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "streamcoord", *args], capture_output=True, text=True, timeout=timeout,
        cwd=str(ROOT), env=environ,
    )


def test_demo_streams_the_answer_through_one_recovery():
    result = run("demo", "--delay", "0")
    assert result.returncode == 0, result.stderr
    assert "[connection lost; recovered" in result.stdout
    assert "[completed]" in result.stdout and "1 recoveries" in result.stdout
    assert result.stdout.rstrip().endswith(DEMO_ANSWER)  # stream.text, coherent after the recovery


def test_chat_prints_the_answer_and_live_metrics_on_stderr(server):
    server.enqueue(openai_text(["Hello", " there"], usage=True))
    result = run("chat", "--provider", "openai", "--base-url", server.base_url + "/v1", "--metrics", "Hi",
                 env={"OPENAI_API_KEY": "sk-cli-test"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello there"
    assert "[completed] 4 chunks" in result.stderr
    assert server.requests[0].json["messages"] == [{"role": "user", "content": "Hi"}]


def test_chat_without_a_key_is_one_clear_line():
    result = run("chat", "--provider", "openai", "Hi")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: no API key for 'openai': pass api_key=... or set OPENAI_API_KEY in the environment"
    )


def test_chat_with_an_unreachable_server_is_one_clear_line():
    result = run("chat", "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "Hi",
                 env={"OPENAI_API_KEY": "sk-cli-test"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not reach openai")
    assert "sk-cli-test" not in result.stderr
