"""`asgi.fetch(app, request, env)`: serve a request with an ASGI application
(Starlette, FastAPI, ...), as Python Workers' `asgi` module does.

The app sees an ASGI 3 `http` scope with `scope["env"]` holding the
worker's bindings; its response streams back as the worker's `Response`.
A WebSocket upgrade gets a `websocket` scope: the app's task lives on in
the sandbox between the socket's events (each client message wakes it).
The `lifespan` protocol's startup runs once per sandbox, before the app's
first request (a failure there is raised).
"""

import asyncio
from urllib.parse import unquote, urlsplit

from workers import Response

__all__ = ["fetch"]

_started = {}


async def _lifespan(app) -> None:
    """Run the app's lifespan startup once (if it speaks the protocol)."""
    if id(app) in _started:
        return
    _started[id(app)] = True
    events = asyncio.Queue()
    await events.put({"type": "lifespan.startup"})
    outcome = asyncio.get_running_loop().create_future()

    async def receive():
        return await events.get()

    async def send(message):
        kind = message["type"]
        if kind == "lifespan.startup.failed" and not outcome.done():
            outcome.set_exception(RuntimeError(f"the ASGI app's startup failed: {message.get('message', '')}"))
        elif kind == "lifespan.startup.complete" and not outcome.done():
            outcome.set_result(None)

    async def run():
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}, receive, send)
        except BaseException:  # noqa: BLE001 - an app without lifespan support raises here
            pass
        if not outcome.done():
            outcome.set_result(None)

    _started[id(app)] = asyncio.ensure_future(run())  # keep the task referenced
    await outcome


# WebSocket apps still running, kept referenced.
_sockets = set()


async def _websocket(app, request, env) -> Response:
    from workers._websocket import WebSocketPair

    client, server = WebSocketPair()
    incoming = asyncio.Queue()
    incoming.put_nowait({"type": "websocket.connect"})
    answered = asyncio.get_running_loop().create_future()

    def on_message(event):
        data = event.data
        message = {"type": "websocket.receive"}
        message["text" if isinstance(data, str) else "bytes"] = data if isinstance(data, str) else bytes(data)
        incoming.put_nowait(message)

    def on_close(event):
        incoming.put_nowait({"type": "websocket.disconnect", "code": event.code, "reason": event.reason})

    async def receive():
        return await incoming.get()

    async def send(message):
        kind = message["type"]
        if kind == "websocket.accept":
            server.accept()
            server.addEventListener("message", on_message)
            server.addEventListener("close", on_close)
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers") or []]
            if message.get("subprotocol"):
                headers.append(("sec-websocket-protocol", message["subprotocol"]))
            if not answered.done():
                answered.set_result(Response(None, status=101, headers=headers, web_socket=client))
        elif kind == "websocket.send":
            server.send(message["text"] if message.get("text") is not None else message.get("bytes", b""))
        elif kind == "websocket.close":
            if not answered.done():
                answered.set_result(Response("", status=403))
            else:
                server.close(message.get("code", 1000), message.get("reason") or "")
        elif kind == "websocket.http.response.start" and not answered.done():
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers") or []]
            answered.set_result(Response("", status=message["status"], headers=headers))

    def finished(task):
        _sockets.discard(task)
        if not answered.done():
            error = None if task.cancelled() else task.exception()
            answered.set_exception(error or RuntimeError("the ASGI app ended without accepting the WebSocket"))
        elif server.readyState == server.OPEN:
            server.close(1000, "")
        elif not task.cancelled() and task.exception() is not None:
            import sys
            import traceback

            traceback.print_exception(task.exception(), file=sys.stderr)

    scope = _scope(request, env)
    scope.update(type="websocket", scheme="wss" if scope["scheme"] == "https" else "ws", subprotocols=_subprotocols(request))
    del scope["method"]
    task = asyncio.ensure_future(app(scope, receive, send))
    _sockets.add(task)
    task.add_done_callback(finished)
    return await answered


def _subprotocols(request) -> list:
    value = request.headers.get("sec-websocket-protocol") or ""
    return [p.strip() for p in value.split(",") if p.strip()]


def _scope(request, env) -> dict:
    url = urlsplit(request.url)
    scheme = url.scheme or "http"
    port = url.port or (443 if scheme == "https" else 80)
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": scheme,
        "path": unquote(url.path or "/"),
        "raw_path": (url.path or "/").encode("latin-1"),
        "query_string": url.query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": None,
        "server": (url.hostname or "localhost", port),
        "env": env,
        "state": {},
    }


async def fetch(app, request, env, ctx=None) -> Response:
    """Run `request` through the ASGI `app`; the app's response."""
    await _lifespan(app)
    if (request.headers.get("upgrade") or "").lower() == "websocket":
        return await _websocket(app, request, env)
    body = await request.bytes()
    sent_body = False
    start = None
    chunks = []
    done = asyncio.get_running_loop().create_future()

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done  # the response is finished: the client "disconnects"
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal start
        kind = message["type"]
        if kind == "http.response.start":
            start = message
        elif kind == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False) and not done.done():
                done.set_result(None)

    await app(_scope(request, env), receive, send)
    if not done.done():
        done.set_result(None)
    if start is None:
        raise RuntimeError("the ASGI app returned without starting a response")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
    return Response(b"".join(chunks), status=start["status"], headers=headers)
