"""The command line: ``python -m streamcoord demo``, ``chat`` and ``providers``."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence

import streamcoord
from recovery_store import DiskStore
from streamcoord import _providers, _registry
from streamcoord._demo import DemoProvider
from streamcoord._keys import Scrubber
from streamcoord._terminal import StatusLine, WordWrapper, describe_metrics

__all__ = ["main"]

DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.0-flash",
    "mistral": "mistral-small-latest",
    "ollama": "llama3",
    "openai_responses": "gpt-4o-mini",
    "vertex": "gemini-2.0-flash",
}
DEFAULT_DEMO_DELAY = 0.02
API_KEY_OPTION = "--api-key"

DESCRIPTION = """\
Stream a chat answer to the terminal.

  demo   streams from a provider embedded in this command (no API key, no network),
         through the whole stack, including one recovery from a dropped connection
  chat   streams the answer to PROMPT from a real provider; the answer goes to stdout
         (pipeable), errors and metrics to stderr
  providers
         lists every provider: its request, address, key variables, settings and extra
"""
EPILOG = """\
examples:
  python -m streamcoord demo
  export OPENAI_API_KEY=...
  python -m streamcoord chat --provider openai "Write a haiku about rivers."
  python -m streamcoord chat --provider ollama --model llama3 --metrics "Hi" > answer.txt
  python -m streamcoord chat --provider bedrock --region us-east-1 "Hi"
  python -m streamcoord providers
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors never repeat a key: not the value given to
    ``--api-key``, nor a value after a mistyped option (``--api-kye sk-...``)."""

    secrets: Sequence[str] = ()

    # One signature for argparse's overloads: the CLI passes no namespace of its own type.
    def parse_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> argparse.Namespace:
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            shown = " ".join(arg if arg.startswith("-") else "***" for arg in unknown)
            self.error(f"unrecognized arguments: {shown} (see --help)")
        return parsed

    def error(self, message: str) -> NoReturn:
        super().error(Scrubber(self.secrets, live=False).text(message))


def _secret_options() -> List[str]:
    """--api-key and the flags of secret provider settings (--access-token)."""
    settings = _providers.command_line_settings()
    return [API_KEY_OPTION] + [_providers.flag(name) for name, (setting, _) in settings.items() if setting.secret]


def _secrets_in(argv: Sequence[str]) -> List[str]:
    options = _secret_options()
    found = []
    for i, arg in enumerate(argv):
        if arg in options and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.split("=", 1)[0] in options and "=" in arg:
            found.append(arg.split("=", 1)[1])
    return [s for s in found if s]


def _said_for_the_command_line(message: str, ours: bool = True) -> str:
    """A message written for Python callers (``pass region='us-east-1'``) in the words of the
    command line (``pass --region 'us-east-1'``). ``ours``: the whole message is the
    library's, so a bare ``base_url`` (a name no English word has) is a flag too; a
    provider's words (an APIError) keep theirs."""
    for name in ("api_key", "base_url", "model", *_providers.command_line_settings()):
        # "name=..." and "name='x'" become "--name ..." and "--name 'x'"; "name= (or" "--name (or".
        message = re.sub(rf"\b{name}=(?=\S)", _providers.flag(name) + " ", message)
        message = re.sub(rf"\b{name}=", _providers.flag(name), message)
        if ours and "_" in name:
            message = re.sub(rf"(?<![\w.-]){name}\b", _providers.flag(name), message)
    return message


def _stream_to(stream: streamcoord.ChatStream, write: Callable[[str], object]) -> None:
    """The answer as it streams, ended with a newline (also when the stream fails part-way,
    so that what follows on the terminal starts on a line of its own)."""
    started = False
    try:
        with stream:
            for chunk in stream:
                recovery = chunk.metadata.get("recovery")
                if recovery:
                    # A terminal cannot take text back: say what the recovery did instead.
                    write(
                        f"\n\n[connection lost; recovered (attempt {recovery['attempt']}, strategy "
                        f"{recovery['strategy']}): the {recovery['rewind']} characters after the last "
                        f"{recovery['strategy']} break are written again]\n\n"
                    )
                if chunk.content:
                    started = True
                    write(chunk.content)
    finally:
        if started:
            write("\n")


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def demo(args: argparse.Namespace) -> int:
    wrapper = WordWrapper(_write_stdout)
    wrapper.feed("streamcoord demo: streaming from an embedded local provider (no key, no network)\n\n")
    with DemoProvider(delay=args.delay) as provider, tempfile.TemporaryDirectory() as store_dir:
        with DiskStore(store_dir) as store:
            client = streamcoord.Client(
                "openai", api_key="demo-key", base_url=provider.base_url, recovery_store=store,
                max_retries=streamcoord.Retry(2, backoff=0.05, max_backoff=0.2),
            )
            stream = client.stream_chat(
                [{"role": "user", "content": "What does streamcoord do?"}], model="demo-model",
                track_metrics=True, stream_recovery=True, recovery={"strategy": "paragraph", "max_retries": 3},
            )
            _stream_to(stream, wrapper.feed)
            wrapper.flush()
    print()
    if stream.metrics is not None:  # always, with track_metrics=True
        wrapper.feed(describe_metrics(stream.metrics) + "\n")
    wrapper.feed(f"finish_reason={stream.finish_reason} usage={stream.usage}\n")
    wrapper.feed("\nThe final text (stream.text), coherent after the recovery:\n\n")
    wrapper.feed(stream.text + "\n")
    wrapper.flush()
    return 0


def chat(args: argparse.Namespace) -> int:
    settings = _settings_given(args)
    # The client first: what the provider needs (a key, an address, a region) is said before the model.
    client = streamcoord.Client(args.provider, api_key=args.api_key, base_url=args.base_url, **settings)
    model = args.model or DEFAULT_MODELS.get(args.provider)
    # Without one, the adapter says what it needs (an Azure deployment URL names its model).
    options: Dict[str, Any] = {"model": model} if model else {}
    status = StatusLine(sys.stdout, sys.stderr) if args.metrics else None
    if status is not None:
        options.update(track_metrics=True, on_metrics=status.update)
    stream = client.stream_chat([{"role": "user", "content": args.prompt}], **options)
    try:
        _stream_to(stream, status.write if status is not None else _write_stdout)
    finally:
        if status is not None:
            status.finish(stream.metrics)  # after the last word, also when the stream failed
    return 0


def _settings_given(args: argparse.Namespace) -> Dict[str, Any]:
    """The provider settings given as flags; one the provider does not take is an error
    naming the providers that do."""
    taken = set(_registry.get(args.provider).client_settings)
    settings = {}
    for name, (_setting, providers) in _providers.command_line_settings().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in taken:
            raise ValueError(f"{_providers.flag(name)} is a setting of {' and '.join(providers)}, not of {args.provider}")
        settings[name] = value
    return settings


def providers(args: argparse.Namespace) -> int:
    width = max(60, min(shutil.get_terminal_size().columns, 100))
    _write_stdout(_providers.format_providers(_providers.describe_all(), width))
    return 0


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each provider setting the command line can pass (--region, --project, ...),
    made from the adapters' own declarations."""
    for name, (setting, takers) in _providers.command_line_settings().items():
        default = f" (default: {', else '.join('$' + env for env in setting.env)})" if setting.env else ""
        if setting.secret:
            default += ". Never printed"
        parser.add_argument(
            _providers.flag(name), dest=name, metavar=name.split("_")[-1].upper(),
            help=f"{', '.join(takers)}: {setting.help}{default}",
        )


def _build_parser(secrets: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m streamcoord", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.secrets = secrets
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,chat,providers}",
                                     parser_class=_Parser)
    p_demo = commands.add_parser(
        "demo", help="stream from an embedded local provider (no key, no network)",
        description="Stream an answer from a provider embedded in this command, through one recovery.",
    )
    p_demo.secrets = secrets
    p_demo.add_argument(
        "--delay", type=float, default=DEFAULT_DEMO_DELAY, metavar="SECONDS",
        help=f"pause between the answer's word-sized pieces (default: {DEFAULT_DEMO_DELAY})",
    )
    p_demo.add_argument(
        "--trace", action="store_true",
        help="print the OpenTelemetry span tree of the demo's stream (needs opentelemetry-sdk)",
    )
    p_demo.set_defaults(run=demo)

    defaults = ", ".join(f"{model} for {name}" for name, model in DEFAULT_MODELS.items())
    p_chat = commands.add_parser(
        "chat", help="stream the answer to PROMPT from a real provider", allow_abbrev=False,
        description="Stream the answer to PROMPT from a provider: the answer to stdout, errors and metrics to stderr.",
    )
    p_chat.secrets = secrets
    p_chat.add_argument(
        "--provider", required=True, choices=_registry.names(), metavar="NAME",
        help=f"the provider to ask (required), one of: {', '.join(_registry.names())}",
    )
    p_chat.add_argument(
        "--model", help=f"the model (default: {defaults}; other providers need --model)",
    )
    by_variables: Dict[str, List[str]] = {}
    for info in _providers.describe_all():
        if info.address_env:
            by_variables.setdefault(", $".join(info.address_env), []).append(info.name)
    from_env = "; ".join(f"for {' and '.join(names)} ${env}" for env, names in by_variables.items())
    p_chat.add_argument(
        "--base-url", metavar="URL",
        help="the provider's API address, e.g. a proxy or a local server (default: the provider's "
             f"address, see the providers command; {from_env})",
    )
    p_chat.add_argument(
        API_KEY_OPTION, metavar="KEY",
        help="the API key (default: the provider's environment variable, e.g. OPENAI_API_KEY, see the "
             "providers command; prefer it: a key on the command line shows in ps and in your shell "
             "history). Never printed",
    )
    _add_setting_flags(p_chat)
    p_chat.add_argument(
        "--metrics", action="store_true",
        help="metrics on stderr: a live status line while streaming (on a terminal), then a summary "
             "line (default: off)",
    )
    p_chat.add_argument("prompt", metavar="PROMPT", help="the user message to send")
    p_chat.set_defaults(run=chat)

    p_providers = commands.add_parser(
        "providers", help="list every provider: its request, address, key variables, settings and extra",
        description="List every registered provider: the request it sends, its address (base_url), the "
                    "environment variables of its key, its settings and the optional extra it needs.",
    )
    p_providers.secrets = secrets
    p_providers.set_defaults(run=providers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    secrets = _secrets_in(argv)
    args = _build_parser(secrets).parse_args(argv)
    try:
        if getattr(args, "trace", False):
            from streamcoord._trace_demo import traced_run

            return int(traced_run(args.run, args))
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except (ImportError, ValueError, TypeError, streamcoord.StreamcoordError) as exc:
        # One clear line for a missing key, an unreachable server, a provider error, in the
        # command line's words (our errors name library arguments: "pass access_token=").
        # The secrets given are scrubbed by the library's rules (none shorter than
        # MIN_SECRET_LENGTH: "--access-token t" must not garble every "t").
        message = _said_for_the_command_line(str(exc), ours=not isinstance(exc, streamcoord.APIError))
        message = Scrubber(secrets, live=False).text(message)
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
