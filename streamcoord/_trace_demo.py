"""``python -m streamcoord demo --trace``: the demo's stream recorded with OpenTelemetry's
SDK (in memory) and printed as a span tree, with each span's attributes and events.

The demo runs inside a span of its own (``streamcoord demo``), so the stream's span shows
as its child, as it would under a web request's span; the recovery the demo provokes is
the ``streamcoord.recovery`` event on it.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, TextIO

from streamcoord._telemetry import instrument, uninstrument

__all__ = ["format_span_tree", "traced_run"]

SDK_MISSING = "demo --trace needs OpenTelemetry's SDK: pip install opentelemetry-sdk"


def traced_run(run: Callable[[Any], int], args: Any, out: TextIO = sys.stdout) -> int:
    """``run(args)`` with telemetry on for every client it makes, then the span tree on ``out``."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError as exc:
        raise ImportError(SDK_MISSING) from exc
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        with tracer_provider.get_tracer("streamcoord.demo").start_as_current_span("streamcoord demo"):
            status = run(args)
    finally:
        uninstrument()
    out.write("\nOpenTelemetry span tree (demo --trace):\n")
    out.write(format_span_tree(exporter.get_finished_spans()))
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return status


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def format_span_tree(spans: Any) -> str:
    """Spans as an indented tree: name, kind, duration, status, attributes, events."""
    children: Dict[Any, List[Any]] = {}
    ids = {span.context.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_time):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: List[str] = []

    def walk(span: Any, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        millis = (span.end_time - span.start_time) / 1e6
        kind = span.kind.name
        lines.append(f"{prefix}{branch}{span.name}  [{kind}]  {millis:.1f} ms  status={span.status.status_code.name}")
        inner = prefix + ("" if root else ("    " if last else "│   "))
        for key, value in sorted((span.attributes or {}).items()):
            lines.append(f"{inner}    {key} = {_value(value)}")
        for event in span.events:
            at = (event.timestamp - span.start_time) / 1e6
            details = " ".join(f"{k}={_value(v)}" for k, v in (event.attributes or {}).items())
            lines.append(f"{inner}    event +{at:.1f} ms {event.name}  {details}")
        kids = children.get(span.context.span_id, [])
        for i, child in enumerate(kids):
            walk(child, inner, i == len(kids) - 1, False)

    for span in children.get(None, []):
        walk(span, "", True, True)
    return "\n".join(lines) + "\n"
