"""`workers.wsgi.fetch(app, request, env)`: serve a request with a WSGI
application (Django, Flask, ...). The environ carries the worker's bindings
as `environ["workers.env"]` (and `"env"`)."""

import io
import sys
from urllib.parse import unquote, urlsplit

from ._http import Response

__all__ = ["fetch"]


def _environ(request, body: bytes, env) -> dict:
    url = urlsplit(request.url)
    scheme = url.scheme or "http"
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # PEP 3333: the path decoded, as latin-1 code points of its bytes.
        "PATH_INFO": unquote(url.path or "/", encoding="latin-1"),
        "QUERY_STRING": url.query,
        "SERVER_NAME": url.hostname or "localhost",
        "SERVER_PORT": str(url.port or (443 if scheme == "https" else 80)),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "workers.env": env,
        "env": env,
    }
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key == "CONTENT_LENGTH":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    if body and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


async def fetch(app, request, env, ctx=None) -> Response:
    """Run `request` through the WSGI `app`; the app's response."""
    body = await request.bytes()
    status_line = None
    headers = []
    written = []

    def start_response(status, response_headers, exc_info=None):
        nonlocal status_line, headers
        if exc_info is not None and status_line is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        status_line, headers = status, list(response_headers)
        return written.append

    result = app(_environ(request, body, env), start_response)
    try:
        chunks = written + [bytes(chunk) for chunk in result]
    finally:
        if hasattr(result, "close"):
            result.close()
    if status_line is None:
        raise RuntimeError("the WSGI app returned without calling start_response")
    return Response(b"".join(chunks), status=int(status_line.split(" ", 1)[0]), headers=headers)
