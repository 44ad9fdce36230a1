"""`fetch`: outbound HTTP through the host's client (and service bindings).

The host enforces the limits (subrequests per request, timeouts, and in
`taipan serve` the refusal of private addresses); this module turns the
Fetch API's arguments into one `wasi:http` request and its answer into a
`Response` whose body is read from the host when the worker reads it.
"""

from urllib.parse import urlsplit

from _taipan import host
from pyodide.ffi import JsException

from ._http import NULL_BODY_STATUSES, Request, Response, _init_kwargs

# Headers the host reads to shape the request; never sent upstream.
REDIRECT_HEADER = "x-taipan-redirect"
URL_HEADER = "x-taipan-url"
BINDING_ERROR_HEADER = "x-taipan-error"


def _request_of(input, init, kwargs) -> Request:
    options = _init_kwargs(init, kwargs)
    redirect = options.pop("redirect", "follow")
    if redirect not in ("follow", "manual", "error"):
        raise TypeError(f"redirect must be 'follow', 'manual' or 'error', got {redirect!r}")
    for ignored in ("cf", "signal", "cache", "mode", "credentials", "integrity", "keepalive"):
        options.pop(ignored, None)
    request = Request(input, **options) if options or not isinstance(input, Request) else input
    request._redirect = redirect
    return request


def _body_of(request: Request):
    body = request._body_source
    if body is None or isinstance(body, bytes):
        return body
    if hasattr(body, "read_all"):
        return body.read_all()
    return body


async def _send(method, scheme, authority, path, headers, body) -> Response:
    future = host.send(method, scheme, authority, path, headers, body)
    response = await host.response_of(future)
    status = response.status()
    header_list = host.response_headers(response)
    if any(name == BINDING_ERROR_HEADER for name, _ in header_list):
        data = host.BodyReader(response).read_all()
        raise JsException(data.decode("utf-8", "replace"))
    status = _status_for_response(status)
    # A 204 or 304 from upstream has no body to read (and may not be given one).
    body = None if status in NULL_BODY_STATUSES else host.BodyReader(response)
    return Response(body, status=status, headers=header_list)


def _status_for_response(status: int) -> int:
    # A fetched response may carry statuses a constructed Response may not (e.g. 1xx).
    return status if 200 <= status <= 599 else 502


async def fetch(input, init=None, **kwargs) -> Response:
    """Fetch a URL: `await fetch("https://example.com", method="POST", body=...)`."""
    request = _request_of(input, init, kwargs)
    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https"):
        raise TypeError(f"fetch() supports http and https URLs, got {request.url!r}")
    if not parts.netloc:
        raise TypeError(f"fetch() needs an absolute URL, got {request.url!r}")
    if parts.hostname and parts.hostname.startswith("__taipan"):
        raise TypeError(f"fetch() cannot reach {parts.hostname!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = [(name, value.encode("latin-1")) for name, value in request.headers]
    headers.append((REDIRECT_HEADER, request._redirect.encode()))
    return await _send(request.method, parts.scheme, parts.netloc, path, headers, _body_of(request))


async def fetch_via(binding: str, input, init, kwargs) -> Response:
    """A service binding's `fetch`: the request goes to the bound worker."""
    request = _request_of(input, init, kwargs)
    headers = [(name, value.encode("latin-1")) for name, value in request.headers]
    headers.append((URL_HEADER, request.url.encode("utf-8")))
    return await _send(
        request.method, "http", host.BINDING_AUTHORITY, f"/{binding}/fetch", headers, _body_of(request)
    )
