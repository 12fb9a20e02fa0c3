"""A chat page that streams answers over Server-Sent Events, with Flask and streamcoord.

    pip install -e ".[web]"
    python examples/flask_app.py            # then open http://127.0.0.1:5000

No key set: the answer comes from streamcoord's embedded demo provider (see chat_common).
Served by waitress, with ``channel_request_lookahead=1`` so that a browser that goes away
is noticed at once, even while the model is quiet; every open answer holds one of the
``--threads`` worker threads. Several processes (``--port`` each, behind one proxy) share
one answer when they share the store (``STREAMCOORD_RECOVERY_DIR`` or ``REDIS_URL``).
"""

from __future__ import annotations

import argparse

import chat_common
from flask import Flask, Response, request

from streamcoord import RecoveryFailed, web


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def page() -> Response:
        return Response(chat_common.page_html(), mimetype="text/html")

    @app.get("/chat/events")
    def chat_events() -> Response:
        backend = chat_common.backend()
        try:
            stream = web.open_stream(
                backend.client,
                chat_common.prompt_messages(request.args.get("prompt")),
                stream_id=request.args.get("stream_id", ""),
                last_event_id=request.headers.get("Last-Event-ID"),  # set when EventSource reconnects
                detach=chat_common.DETACH,  # the answer outlives this connection; reconnects follow it
                **backend.options,
            )
        except ValueError as exc:  # no prompt, a malformed stream_id or Last-Event-ID
            return Response(str(exc), 400, mimetype="text/plain")
        except RecoveryFailed:  # unknown, finished or expired: a non-200 stops the reconnecting
            return Response("this answer is no longer available", 410, mimetype="text/plain")
        body = web.sse_body(
            stream,
            metrics_interval=chat_common.METRICS_INTERVAL,
            disconnected=web.disconnect_probe(request.environ),
        )
        # Flask hands the body's close() on to the WSGI server, which calls it when the
        # browser goes away: that stops this connection's reader (the answer goes on).
        return Response(body, headers=web.SSE_HEADERS)

    @app.post("/chat/cancel")
    def chat_cancel() -> Response:
        """The page's Stop button: the generation stops within a second, in any process."""
        try:
            chat_common.backend().stop(request.args.get("stream_id", ""))
        except ValueError as exc:  # a malformed stream_id
            return Response(str(exc), 400, mimetype="text/plain")
        return Response(status=204)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port (printed)")
    parser.add_argument("--threads", type=int, default=32, help="answers served at once (default 32)")
    args = parser.parse_args()

    from waitress import create_server

    backend = chat_common.backend()
    server = create_server(
        create_app(), host=args.host, port=args.port, threads=args.threads, channel_request_lookahead=1
    )
    print(
        f"streamcoord Flask example on http://{args.host}:{server.effective_port}, answering with "
        f"{backend.description}", flush=True,
    )
    try:
        server.run()
    finally:
        backend.close()


if __name__ == "__main__":
    main()
