"""Anthropic's continuation rules: when a broken answer is continued natively, as a
prefill (the partial answer as a final assistant turn, which the model goes on from),
and when through a user turn that asks the model to go on.

Not every model takes a prefill: the Claude 4.6 models answer one with a 400
(:data:`NO_PREFILL_MODELS`), as does a model seen refusing it in this process, and
extended thinking (``thinking=``) takes none either. The API rejects a final assistant
turn that ends in whitespace, so a prefill is ``rstrip()``-ed (the adapter's
``continuation_trims_space``: the kept text was cut before its trailing whitespace, and
the model's continuation starts with it again); an assistant turn followed by a user
turn is sent intact, as a fresh turn does not start with the whitespace. A prefill of
the user's own (a last assistant message) is extended, not repeated.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Set

from adapters.base import CONTINUE_INSTRUCTION, error_message
from streamcoord.errors import APIError

__all__ = ["NO_PREFILL_MODELS", "continuation_body", "prefills", "refused_prefill_body", "takes_prefill"]

# Models that answer a prefill (a final assistant turn) with a 400, matched anywhere in
# the model id so that the Bedrock and Vertex names (us.anthropic.claude-opus-4-6-v1,
# claude-opus-4-6@...) match too.
NO_PREFILL_MODELS = re.compile(r"claude-(?:opus|sonnet|haiku)-4-6")
# Models seen refusing a prefill in this process; a set add is atomic, so no lock.
_REFUSED_PREFILL: Set[str] = set()


def continuation_body(body: Dict[str, Any], partial_text: str) -> Dict[str, Any]:
    """The body that continues ``partial_text``: a prefill where the request takes one
    (:func:`prefills`), else an assistant turn followed by a user turn asking to go on."""
    body = dict(body)
    messages = list(body.get("messages") or [])
    prefix = partial_text
    if messages and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
        prefix = messages.pop()["content"] + partial_text
    prefill = prefills(body)
    if prefill:
        prefix = prefix.rstrip()
    if prefix:
        messages.append({"role": "assistant", "content": prefix})
    if not prefill:
        messages.append({"role": "user", "content": CONTINUE_INSTRUCTION})
    body["messages"] = messages
    return body


def refused_prefill_body(body: Dict[str, Any], exc: BaseException) -> Optional[Dict[str, Any]]:
    """A prefill continuation answered with the 400 of a model that takes no prefill
    ("This model does not support assistant message prefill. The conversation must end
    with a user message."): the model is remembered for this process and the same
    continuation goes through a user turn instead. None for any other failure."""
    messages = body.get("messages") or []
    if not (isinstance(exc, APIError) and exc.status == 400 and messages and messages[-1].get("role") == "assistant"):
        return None
    if "prefill" not in error_message(exc.body).lower():
        return None
    model = body.get("model")
    if isinstance(model, str):
        _REFUSED_PREFILL.add(model)
    return dict(body, messages=list(messages) + [{"role": "user", "content": CONTINUE_INSTRUCTION}])


def prefills(body: Dict[str, Any]) -> bool:
    """Whether the continuation of a request with ``body`` is a prefill: not for a model
    that takes none (:func:`takes_prefill`), nor with extended thinking on (``thinking=``),
    which takes none either."""
    thinking = body.get("thinking")
    thinking_on = isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled")
    return not thinking_on and takes_prefill(body.get("model"))


def takes_prefill(model: Any) -> bool:
    """Whether ``model`` continues a final assistant turn: not the models Anthropic's
    migration guide lists ("Prefilling assistant messages returns a 400 error on Claude 4.6
    models"), nor one seen refusing it in this process (a model newer than this table)."""
    if not isinstance(model, str):
        return True
    return NO_PREFILL_MODELS.search(model) is None and model not in _REFUSED_PREFILL
