"""``import streamcoord`` pays only for streaming: stores (the whole ``recovery_store``
package) and recovery, retries, typed events, live readers, Bedrock's decoder, telemetry
and the metrics snapshot class load when first used, and every public name still imports."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]

# What `import streamcoord` must leave unloaded (diskcache imports django.core.cache when
# Django is installed; recovery_store with any of its modules), and which of them a first
# recovered stream then loads.
_CHILD = """
import json, sys
import streamcoord

HEAVY = ("diskcache", "django", "tenacity", "redis", "opentelemetry", "jiter", "recovery_store",
         "streamcoord.events", "streamcoord._attach", "streamcoord.web", "streamcoord._eventstream",
         "streamcoord._telemetry", "streamcoord._live", "streamcoord._recovery", "streamcoord._recovery_controller",
         "streamcoord._stored", "streamcoord._stream_metrics", "secrets")

def loaded():
    return sorted(m for m in HEAVY if any(k == m or k.startswith(m + ".") for k in sys.modules))

after_import = loaded()
from streamcoord._demo import DEMO_ANSWER, DemoProvider

with DemoProvider(delay=0, drops=1) as demo:  # drops the first connection: a recovery
    client = streamcoord.Client("openai", api_key="demo-key", base_url=demo.base_url)
    stream = client.stream_chat([{"role": "user", "content": "hi"}], model="demo-model", stream_recovery=True)
    for _ in stream:
        pass
    text = stream.text  # the answer after the recovery's rewind
    after_stream = loaded()
    events = list(client.stream_chat([{"role": "user", "content": "hi"}], model="demo-model").events())
print(json.dumps({"after_import": after_import, "after_stream": after_stream, "after_events": loaded(),
                  "text": text, "answer": DEMO_ANSWER, "last_event": type(events[-1]).__name__}))
"""


def test_import_streamcoord_leaves_stores_retries_and_telemetry_unloaded_until_a_stream_uses_them(tmp_path):
    env = dict(os.environ, STREAMCOORD_RECOVERY_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["after_import"] == []
    assert seen["text"] == seen["answer"]  # recovered through the default DiskStore
    # Django comes with diskcache where it is installed.
    assert set(seen["after_stream"]) - {"django"} == {
        "diskcache", "recovery_store", "tenacity",
        "streamcoord._live", "streamcoord._recovery", "streamcoord._recovery_controller", "streamcoord._stored",
        "secrets",  # with tenacity
    }
    assert "streamcoord.events" in seen["after_events"] and seen["last_event"] == "Done"


def test_every_public_name_imports_from_a_fresh_interpreter():
    code = (
        "import streamcoord, recovery_store\n"
        "from streamcoord import *\n"
        "from recovery_store import *\n"
        "import streamcoord.web\n"
        "from streamcoord import events, StreamingCoordinator, instrument\n"
        "from recovery_store import DiskStore, RedisStore\n"
        "assert set(streamcoord.__all__) <= set(dir(streamcoord)), 'dir() misses names'\n"
        "assert set(recovery_store.__all__) <= set(dir(recovery_store)), 'dir() misses names'\n"
        "assert events.TextDelta and StreamingCoordinator.start_stream and DiskStore.__name__ == 'DiskStore'\n"
        "print(sorted(streamcoord.__all__) == sorted(n for n in streamcoord.__all__ if n in globals()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_an_unknown_name_is_an_attribute_error_naming_it():
    import recovery_store
    import streamcoord

    for module in (streamcoord, recovery_store):
        try:
            module.NoSuchThing  # noqa: B018
        except AttributeError as exc:
            assert "NoSuchThing" in str(exc)
        else:
            raise AssertionError(f"{module.__name__}.NoSuchThing did not raise")
