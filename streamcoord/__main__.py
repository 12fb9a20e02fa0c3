"""The command line: ``python -m streamcoord demo`` and ``python -m streamcoord chat``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import List, Optional

import streamcoord
from recovery_store import DiskStore
from streamcoord import _registry
from streamcoord._demo import DemoProvider

__all__ = ["main"]

DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.0-flash",
    "mistral": "mistral-small-latest",
    "ollama": "llama3",
}


def _metrics_line(metrics: streamcoord.StreamMetrics) -> str:
    first = "-" if metrics.time_to_first_chunk_ms is None else f"{metrics.time_to_first_chunk_ms:.0f} ms"
    return (
        f"[{metrics.status}] {metrics.chunks_received} chunks, {metrics.bytes_received} bytes, "
        f"{metrics.duration_ms:.0f} ms, first chunk {first}, {metrics.chunks_per_second:.1f} chunks/s, "
        f"{metrics.errors} errors, {metrics.retries} retries, {metrics.recoveries} recoveries"
    )


def _live_metrics(metrics: streamcoord.StreamMetrics) -> None:
    """``--metrics``: about once a second while streaming, and once at the end, on stderr
    (stdout keeps only the answer, so it can be piped)."""
    sys.stderr.write("\n" + _metrics_line(metrics) + "\n")
    sys.stderr.flush()


def _print_stream(stream: streamcoord.ChatStream) -> None:
    with stream:
        for chunk in stream:
            recovery = chunk.metadata.get("recovery")
            if recovery:
                # A terminal cannot take text back: say what the recovery did instead.
                sys.stdout.write(
                    f"\n\n[connection lost; recovered (attempt {recovery['attempt']}, strategy "
                    f"{recovery['strategy']}): the {recovery['rewind']} characters after the last "
                    f"{recovery['strategy']} break are written again]\n\n"
                )
            sys.stdout.write(chunk.content)
            sys.stdout.flush()
    sys.stdout.write("\n")


def demo(args: argparse.Namespace) -> int:
    print("streamcoord demo: streaming from an embedded local provider (no key, no network)\n")
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
            _print_stream(stream)
    print("\n" + _metrics_line(stream.metrics))
    print(f"finish_reason={stream.finish_reason} usage={stream.usage}")
    print("\nThe final text (stream.text), coherent after the recovery:\n")
    print(stream.text)
    return 0


def chat(args: argparse.Namespace) -> int:
    model = args.model or DEFAULT_MODELS.get(args.provider)
    if model is None:
        raise ValueError(f"pass --model for provider {args.provider!r}")
    options = {"model": model}
    if args.metrics:
        options.update(track_metrics=True, on_metrics=_live_metrics)
    client = streamcoord.Client(args.provider, base_url=args.base_url)
    _print_stream(client.stream_chat([{"role": "user", "content": args.prompt}], **options))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamcoord", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p_demo = commands.add_parser("demo", help="stream from an embedded local provider")
    p_demo.add_argument("--delay", type=float, default=0.02, help="seconds between pieces (default 0.02)")
    p_demo.add_argument("--trace", action="store_true", help="print the OpenTelemetry span tree (needs opentelemetry-sdk)")
    p_demo.set_defaults(run=demo)
    p_chat = commands.add_parser("chat", help="stream an answer from a real provider")
    p_chat.add_argument("--provider", required=True, choices=_registry.names())
    p_chat.add_argument("--model")
    p_chat.add_argument("--base-url")
    p_chat.add_argument("--metrics", action="store_true", help="live metrics on stderr")
    p_chat.add_argument("prompt")
    p_chat.set_defaults(run=chat)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "trace", False):
            from streamcoord._trace_demo import traced_run

            return traced_run(args.run, args)
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except (ImportError, ValueError, TypeError, streamcoord.StreamcoordError) as exc:
        # One clear line for a missing key, an unreachable server, a provider error.
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
