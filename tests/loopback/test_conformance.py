"""Every recorded provider stream of the conformance corpus through the FULL stack:
``streamcoord.Client(provider, base_url=<loopback>)``, real HTTP, the worker, the decoder,
the adapter's parser, the stream's accumulators. Served whole and re-split into random
1..17-byte HTTP chunks; the result must be what the manifest says."""

from __future__ import annotations

import json

import pytest

from streamcoord.errors import ServerError
from tests.support.fakeserver import raw_file
from tests.unit.adapters._corpus import (
    Outcome,
    body_of,
    check_outcome,
    check_tool_calls,
    entry_params,
    expected_finish,
    expected_usage,
    path_of,
)

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
CONTENT_TYPES = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-5"}
PATHS = {"openai": "/v1/chat/completions", "mistral": "/v1/chat/completions", "anthropic": "/v1/messages",
         "ollama": "/api/chat"}


def expected_path(provider, model):
    return PATHS.get(provider) or f"/models/{model}:streamGenerateContent"


@pytest.mark.parametrize("split,seed", [(None, 0), ((1, 17), 7), ((1, 17), 8)], ids=["whole", "r17-7", "r17-8"])
@pytest.mark.parametrize("entry", entry_params())
def test_corpus_file_through_the_full_stack(server, client, entry, split, seed):
    provider = entry["provider"]
    model = entry.get("model") or DEFAULT_MODELS[provider]
    server.enqueue(raw_file(path_of(entry), split=split, seed=seed, content_type=CONTENT_TYPES[entry["format"]]))
    reported = []
    stream = client(provider, max_retries=0).stream_chat(
        MESSAGES, model=model, on_error=lambda status, body: reported.append((status, body)))
    outcome = Outcome()
    if entry.get("error"):
        with pytest.raises(ServerError) as info:
            for chunk in stream:
                outcome.add(chunk)
        body = json.loads(body_of(entry).decode("utf-8").split("data: ", 1)[1])
        assert info.value.status == 529
        assert info.value.body == body
        assert info.value.body["error"] == entry["error"]
        assert reported == [(529, body)]
        assert stream.text == "" and stream.finish_reason is None
    else:
        for chunk in stream:
            outcome.add(chunk)
        check_outcome(entry, outcome)
        assert stream.text == entry["expected_text"]
        assert stream.finish_reason == expected_finish(entry)
        assert stream.usage == expected_usage(entry)
        check_tool_calls(entry, stream.tool_calls)
        assert stream.reasoning == entry.get("reasoning_text", "")
        assert reported == []
        assert stream.metrics.status == "completed"
    assert len(server.requests) == 1
    assert server.requests[0].path == expected_path(provider, model)
