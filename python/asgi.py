"""`asgi.fetch(app, request, env)`: serve a request with an ASGI application
(Starlette, FastAPI, ...), as Python Workers' `asgi` module does.

The app sees an ASGI 3 `http` scope with `scope["env"]` holding the
worker's bindings; its response streams back as the worker's `Response`.
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
