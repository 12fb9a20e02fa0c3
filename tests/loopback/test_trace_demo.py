"""``python -m streamcoord demo --trace``, run as a user would: the demo's recovered stream
printed as an OpenTelemetry span tree (needs opentelemetry-sdk), or a clear line without it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_demo(*python_args):
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    environ.pop("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", None)
    return subprocess.run([sys.executable, *python_args], capture_output=True, text=True, timeout=60,
                          cwd=str(ROOT), env=environ)


def test_demo_trace_prints_the_span_tree_of_the_recovered_stream():
    pytest.importorskip("opentelemetry.sdk")
    result = run_demo("-m", "streamcoord", "demo", "--trace", "--delay", "0")
    assert result.returncode == 0, result.stderr
    tree = result.stdout.split("OpenTelemetry span tree (demo --trace):\n", 1)[1].splitlines()
    assert tree[0].startswith("streamcoord demo  [INTERNAL]")
    assert tree[1].startswith("└── chat demo-model  [CLIENT]") and tree[1].endswith("status=UNSET")
    assert "        gen_ai.provider.name = openai" in tree
    assert "        gen_ai.response.finish_reasons = [stop]" in tree
    (event,) = [line for line in tree if "event +" in line]
    assert "streamcoord.recovery" in event and "strategy=paragraph" in event and "error.type=ConnectionLost" in event
    assert "demo-key" not in result.stdout and "What does streamcoord do?" not in result.stdout


def test_demo_trace_without_the_sdk_says_what_to_install():
    block = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('opentelemetry'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['streamcoord', 'demo', '--trace', '--delay', '0']\n"
        "runpy.run_module('streamcoord', run_name='__main__')\n"
    )
    result = run_demo("-c", block)
    assert result.returncode == 1
    assert "pip install opentelemetry-sdk" in result.stderr and "Traceback" not in result.stderr
