"""The chat page and its event stream."""

import chat_common
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from streamcoord import RecoveryFailed, web


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(chat_common.page_html(), content_type="text/html; charset=utf-8")


def chat_events(request: HttpRequest) -> HttpResponseBase:
    backend = chat_common.backend()
    try:
        stream = web.open_stream(
            backend.client,
            chat_common.prompt_messages(request.GET.get("prompt")),
            stream_id=request.GET.get("stream_id", ""),
            last_event_id=request.headers.get("Last-Event-ID"),  # set when EventSource reconnects
            detach=chat_common.DETACH,  # the answer outlives this connection; reconnects follow it
            **backend.options,
        )
    except ValueError as exc:  # no prompt, a malformed stream_id or Last-Event-ID
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    except RecoveryFailed:  # unknown, finished or expired: a non-200 stops the reconnecting
        return HttpResponse("this answer is no longer available", status=410, content_type="text/plain; charset=utf-8")
    body = web.sse_body(
        stream,
        metrics_interval=chat_common.METRICS_INTERVAL,
        disconnected=web.disconnect_probe(request.META),  # request.META is the WSGI environ
    )
    # StreamingHttpResponse hands the body's close() on to the WSGI server, which calls it
    # when the browser goes away: that stops this connection's reader (the answer goes on).
    return StreamingHttpResponse(body, headers=web.SSE_HEADERS)


def chat_cancel(request: HttpRequest) -> HttpResponse:
    """The page's Stop button: the generation stops within a second, in any process."""
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    try:
        chat_common.backend().stop(request.GET.get("stream_id", ""))
    except ValueError as exc:  # a malformed stream_id
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    return HttpResponse(status=204)
