"""What each registered provider needs, read from its adapter (the one source): the request
it sends, its address, its key and credential variables, its settings and the optional
extra it needs. ``python -m streamcoord providers`` prints it; the ``chat`` command's
provider flags (``--region``, ``--project``, ...) are made from the same settings."""

from __future__ import annotations

import copy
import dataclasses
import textwrap
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from streamcoord import _registry
from streamcoord._adapter import Adapter, ProviderSetting

__all__ = ["ProviderInfo", "command_line_settings", "describe", "describe_all", "flag", "format_providers",
           "settings_of"]

# What a request is built with to show its shape: placeholders, never a real key.
SHAPE_MESSAGES = [{"role": "user", "content": "..."}]


def flag(setting: str) -> str:
    """The command-line flag of a setting: ``api_version`` is ``--api-version``."""
    return "--" + setting.replace("_", "-")


def settings_of(adapter: Adapter) -> List[ProviderSetting]:
    """The adapter's settings as ProviderSettings (a custom adapter may declare plain names)."""
    return [s if isinstance(s, ProviderSetting) else ProviderSetting(str(s), "", command_line=False)
            for s in adapter.client_settings]


@dataclasses.dataclass(frozen=True)
class ProviderInfo:
    name: str
    request: str  # e.g. "POST {base_url}/chat/completions"; "" when it cannot be shown
    address: str  # the default base_url, or its convention
    address_env: Tuple[str, ...]
    key_env: Tuple[str, ...]
    key_required: bool
    other_credentials: str
    settings: Tuple[ProviderSetting, ...]
    extra: Optional[str]
    extra_for: str


def describe(name: str) -> ProviderInfo:
    adapter = _registry.get(name)
    settings = tuple(settings_of(adapter))
    # The settings a command line could give, as placeholders ("{region}"), so that the
    # addresses that depend on them are shown in their general form.
    placeholders = {str(s): "{%s}" % s for s in settings if s.command_line and not s.secret}
    shown = adapter
    try:
        shown = adapter.configure(**placeholders)
    except (TypeError, ValueError):
        # An adapter that checks its settings against real names (a region, a project)
        # refuses placeholders: a copy gets them as they are, only to show the shape.
        shown = copy.copy(adapter)
        for setting, placeholder in placeholders.items():
            if hasattr(shown, setting):
                setattr(shown, setting, placeholder)
    return ProviderInfo(
        name=name, request=_request_line(shown), address=adapter.address_help or shown.default_base_url,
        address_env=tuple(adapter.base_url_env), key_env=tuple(adapter.api_key_env),
        key_required=bool(adapter.requires_api_key), other_credentials=adapter.other_credentials,
        settings=settings, extra=adapter.extra, extra_for=adapter.extra_for,
    )


def _request_line(adapter: Adapter) -> str:
    """The request, one per form of address an adapter shows (``shown_addresses``: Azure's
    v1 endpoint, deployment URL and resource endpoint make different paths), each with the
    address written ``{base_url}``."""
    forms = getattr(adapter, "shown_addresses", None) or (("{base_url}", ""),)
    lines = []
    for address, what in forms:
        try:
            request = adapter.build_request(SHAPE_MESSAGES, {"model": "{model}"}, base_url=address, api_key=None)
        except Exception:  # noqa: BLE001 - a custom adapter that cannot build it from placeholders
            continue
        url = unquote(request.url)
        if url.startswith(address):
            url = "{base_url}" + url[len(address):]
        lines.append(f"{request.method} {url}" + (f" (base_url {address}: {what})" if what else ""))
    return "; ".join(lines)


def describe_all() -> List[ProviderInfo]:
    return [describe(name) for name in _registry.names()]


def command_line_settings() -> Dict[str, Tuple[ProviderSetting, List[str]]]:
    """Every setting the command line can pass: name -> (the setting, the providers taking it)."""
    found: Dict[str, Tuple[ProviderSetting, List[str]]] = {}
    for name in _registry.names():
        for setting in settings_of(_registry.get(name)):
            if setting.command_line:
                found.setdefault(str(setting), (setting, []))[1].append(name)
    return found


def _variables(names: Sequence[str]) -> str:
    return ", ".join(f"${name}" for name in names)


def format_providers(infos: Sequence[ProviderInfo], width: int = 100) -> str:
    """The providers as plain text, one block each."""
    lines: List[str] = []

    def field(label: str, text: str) -> None:
        lines.extend(textwrap.wrap(text, width, initial_indent=f"  {label:<10}", subsequent_indent=" " * 12,
                                   break_on_hyphens=False, break_long_words=False))

    for info in infos:
        lines.append(info.name)
        if info.request:
            field("request", info.request)
        address = info.address or "none: pass --base-url (base_url=)"
        if info.address_env:
            address = f"{_variables(info.address_env)}, else {address}" if info.address else _variables(info.address_env)
        field("base_url", address)
        if info.key_env:
            key = f"{_variables(info.key_env)} ({'required' if info.key_required else 'optional'})"
        else:
            key = "none" if not info.other_credentials else ""
        field("key", "; ".join(part for part in (key, info.other_credentials) if part))
        for setting in info.settings:
            text = f"{setting}=" + (f" ({flag(setting)})" if setting.command_line else "")
            text += f": {setting.help}" if setting.help else ""
            if setting.env:
                text += f"; default {_variables(setting.env)}"
            field("setting", text)
        if info.extra:
            field("extra", f"pip install 'streamcoord[{info.extra}]'" + (f" for {info.extra_for}" if info.extra_for else ""))
    return "\n".join(lines) + "\n"
