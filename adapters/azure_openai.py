"""Azure OpenAI: OpenAI's chat completions and Responses APIs behind Azure's addresses and auth.

Addresses (``base_url``, default ``AZURE_OPENAI_ENDPOINT``):

* ``https://{resource}.openai.azure.com/openai/v1``: the v1 API, no api-version; chat
  completions and Responses (``azure_openai_responses``);
* ``https://{resource}.openai.azure.com/openai/deployments/{deployment}``: chat
  completions with ``?api-version=`` (``api_version=``, else ``OPENAI_API_VERSION``);
* ``https://{resource}.openai.azure.com`` (the resource endpoint, as the official SDK's
  ``azure_endpoint``): chat completions go to the deployment named by ``model``, with the
  api-version; Responses to the v1 API.

Auth: the ``api-key`` header (``api_key`` or ``AZURE_OPENAI_API_KEY``), or ``Authorization:
Bearer`` with a Microsoft Entra token from ``azure_ad_token_provider=``, a callable asked
before every request sent (retries and continuations too), so expiring tokens work.

Parsing is OpenAI's: Azure's first chunk (empty ``choices``, ``prompt_filter_results``) and
the per-choice ``content_filter_results`` are read; a filtered answer ends with
``content_filter`` and its filter results in ``metadata["content_filter_results"]``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from adapters.base import Adapter, EventParser, HTTPRequest, ProviderSetting, bearer_headers
from adapters.openai import OpenAIAdapter, OpenAIParser
from adapters.openai_responses import OpenAIResponsesAdapter
from streamcoord._keys import check_api_key
from streamcoord.errors import CallbackError

__all__ = ["AzureOpenAIAdapter", "AzureOpenAIParser", "AzureResponsesAdapter"]

ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
API_VERSION_ENV = "OPENAI_API_VERSION"
TOKEN_PROVIDER = "azure_ad_token_provider"
TOKEN_SETTING = ProviderSetting(TOKEN_PROVIDER, "a callable returning a Microsoft Entra token, asked before each request",
                                command_line=False)
# A choice's filter verdicts: content_filter_offsets says which span of the answer an
# Asynchronous Filter annotation judged.
FILTER_KEYS = ("content_filter_results", "content_filter_offsets")


class AzureOpenAIParser(OpenAIParser):
    """OpenAI's parser; Azure's filter results kept in the metadata of the chunks that
    carry them (the prompt's on a chunk of their own, before the answer; an Asynchronous
    Filter annotation, a choice with filter results and no delta, on a chunk of its own)."""

    # OpenAI's own choice keys: a choice with anything else (content_filter_results on
    # every content chunk) takes parse_object, which keeps it.
    inline_choice_keys = frozenset(("index", "delta", "logprobs", "finish_reason"))

    def parse_object(self, obj: Dict[str, Any], out: List[Any]) -> None:
        before = len(out)
        super().parse_object(obj, out)
        prompt_results = obj.get("prompt_filter_results")
        if prompt_results and not obj.get("choices"):
            out.append(self._chunk(obj, "", None, None, None, {"prompt_filter_results": prompt_results}))
            return
        choices = obj.get("choices")
        main = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        if main.get("index"):
            return  # another choice's results stay on that choice's chunk (n > 1: not kept)
        filters = {key: main[key] for key in FILTER_KEYS if main.get(key)}
        if not filters:
            return
        if len(out) > before and "choice" not in out[before].metadata:
            out[before].metadata.update(filters)
        else:  # an annotation of text already sent (the asynchronous filter): metadata only
            out.append(self._chunk(obj, "", None, None, None, filters))


class _Azure:
    """Azure's settings, addresses and auth, shared by both APIs (a mixin: first base)."""

    name = "azure_openai"
    otel_provider_name = "azure.ai.openai"
    # No default address (never OpenAI's, which the base adapters have): an Azure key goes
    # only to the endpoint given or in AZURE_OPENAI_ENDPOINT.
    default_base_url = ""
    api_key_env: Sequence[str] = ("AZURE_OPENAI_API_KEY",)
    client_settings: Sequence[str] = (
        ProviderSetting("api_version", "the Azure OpenAI API version of a deployment URL, e.g. 2024-10-21",
                        env=(API_VERSION_ENV,)),
        TOKEN_SETTING,
    )
    # What ``providers`` shows the request for: (an address of each form, what it is).
    shown_addresses: Sequence[Tuple[str, str]] = (
        ("https://{resource}.openai.azure.com/openai/v1", "the v1 endpoint"),
        ("https://{resource}.openai.azure.com/openai/deployments/{deployment}", "a deployment's URL"),
        ("https://{resource}.openai.azure.com", "the resource endpoint: the deployment is the model"),
    )
    base_url_env: Sequence[str] = (ENDPOINT_ENV,)
    address_help = (
        "https://{resource}.openai.azure.com/openai/v1, .../openai/deployments/{deployment} (with api_version), "
        "or the resource endpoint https://{resource}.openai.azure.com"
    )
    other_credentials = f"or a Microsoft Entra token from {TOKEN_PROVIDER}= (Authorization: Bearer)"
    api_version: Optional[str] = None
    azure_ad_token_provider: Optional[Callable[[], str]] = None

    def configure(self, **settings: Any) -> Adapter:
        adapter = copy.copy(self)
        version = settings.get("api_version")
        if version is not None and (not isinstance(version, str) or not version.strip()):
            raise TypeError(f"api_version must be a str such as '2024-10-21', got {version!r:.80}")
        provider = settings.get(TOKEN_PROVIDER)
        if provider is not None and not callable(provider):
            raise TypeError(f"{TOKEN_PROVIDER} must be a callable that returns a Microsoft Entra token, got {provider!r:.80}")
        adapter.api_version = version.strip() if version else None
        adapter.azure_ad_token_provider = provider
        return adapter  # type: ignore[return-value]

    def resolve_api_key(self, api_key: Optional[str]) -> Optional[str]:
        if self.azure_ad_token_provider is not None:
            if api_key is not None:
                raise ValueError(f"pass api_key=... or {TOKEN_PROVIDER}=..., not both")
            return None
        return Adapter.resolve_api_key(self, api_key)  # type: ignore[arg-type]

    def resolve_base_url(self, base_url: Optional[str]) -> str:
        url = Adapter.resolve_base_url(self, base_url or os.environ.get(ENDPOINT_ENV) or None)  # type: ignore[arg-type]
        if not url:
            raise ValueError(
                f"{self.name} needs its address: pass base_url='https://{{resource}}.openai.azure.com/openai/v1' "
                f"(or a deployment's URL) or set {ENDPOINT_ENV}"
            )
        if self.api_version and _path(url).endswith("/openai/v1"):
            # Refused, not dropped unseen (OPENAI_API_VERSION, which other tools read too, is ignored there).
            raise ValueError(
                f"api_version={self.api_version!r} is for a deployment URL (.../openai/deployments/{{deployment}}); "
                "the v1 endpoint takes no API version: leave api_version= out"
            )
        return url

    def _version_query(self) -> Dict[str, str]:
        version = self.api_version or os.environ.get(API_VERSION_ENV)
        if not version:
            raise ValueError(
                f"a deployment URL needs an API version: pass api_version=... (e.g. '2024-10-21') or set "
                f"{API_VERSION_ENV}, or use the v1 endpoint https://{{resource}}.openai.azure.com/openai/v1"
            )
        return {"api-version": version}

    def headers(self, api_key: Optional[str], options: Dict[str, Any]) -> Dict[str, str]:
        headers = bearer_headers(None, options)
        if api_key:
            headers.setdefault("api-key", api_key)
        return headers

    def before_send(self, request: HTTPRequest) -> HTTPRequest:
        provider = self.azure_ad_token_provider
        if provider is None:
            return request
        try:
            token = provider()
        except Exception as exc:
            raise CallbackError(f"{TOKEN_PROVIDER} raised {type(exc).__name__}: {exc}", TOKEN_PROVIDER) from exc
        if not isinstance(token, str) or not token.strip():
            raise CallbackError(f"{TOKEN_PROVIDER} must return the token as a non-empty str, got {type(token).__name__}",
                                TOKEN_PROVIDER)
        checked = check_api_key(token, f"the token from {TOKEN_PROVIDER}")
        return dataclasses.replace(request, headers=dict(request.headers, Authorization=f"Bearer {checked}"))


def _path(base_url: str) -> str:
    return urllib.parse.urlsplit(base_url).path.rstrip("/")


class AzureOpenAIAdapter(_Azure, OpenAIAdapter):
    """Chat completions on Azure (``azure_openai``)."""

    example_model = "your deployment's name"

    def build_request(
        self, messages: List[Dict[str, Any]], options: Dict[str, Any], *, base_url: str, api_key: Optional[str]
    ) -> HTTPRequest:
        path = _path(base_url)
        deployment = path.rsplit("/openai/deployments/", 1)[1].split("/")[0] if "/openai/deployments/" in path else None
        if deployment and not options.get("model"):
            options = dict(options, model=urllib.parse.unquote(deployment))  # the deployment serves one model
        request = super().build_request(messages, options, base_url=base_url, api_key=api_key)
        if path.endswith("/openai/v1"):
            url = f"{base_url}/chat/completions"
        elif deployment:
            url = f"{base_url}/chat/completions?" + urllib.parse.urlencode(self._version_query())
        else:  # the resource endpoint: the deployment is the model, as in the official SDK
            name = urllib.parse.quote((request.json or {})["model"], safe="")
            url = f"{base_url}/openai/deployments/{name}/chat/completions?" + urllib.parse.urlencode(self._version_query())
        return dataclasses.replace(request, url=url, headers=self.headers(api_key, options))

    def new_parser(self, request: HTTPRequest) -> EventParser:
        return AzureOpenAIParser(self.name)


class AzureResponsesAdapter(_Azure, OpenAIResponsesAdapter):
    """The Responses API on Azure's v1 endpoint (``azure_openai_responses``)."""

    name = "azure_openai_responses"
    example_model = "your deployment's name"
    address_help = "https://{resource}.openai.azure.com/openai/v1, or the resource endpoint https://{resource}.openai.azure.com"
    # The v1 API has no api-version: not a setting here (OPENAI_API_VERSION is not read).
    client_settings: Sequence[str] = (TOKEN_SETTING,)
    shown_addresses: Sequence[Tuple[str, str]] = (
        ("https://{resource}.openai.azure.com/openai/v1", "the v1 endpoint"),
        ("https://{resource}.openai.azure.com", "the resource endpoint"),
    )

    def url(self, base_url: str, path: str, query: Optional[Dict[str, Any]] = None) -> str:
        if "/openai/" not in _path(base_url) + "/":
            base_url += "/openai/v1"  # the resource endpoint: Responses live on the v1 API
        elif "/openai/deployments/" in _path(base_url) + "/":
            raise ValueError(
                f"{self.name} needs the v1 endpoint, e.g. base_url='https://{{resource}}.openai.azure.com/openai/v1': "
                "Azure serves the Responses API there, not under a deployment"
            )
        return super().url(base_url, path, query)
