"""`fetch`: outbound HTTP through the host's client (and service bindings).

The host enforces the limits (subrequests per request, timeouts, and in
`taipan serve` the refusal of private addresses); this module turns the
Fetch API's arguments into one `wasi:http` request and its answer into a
`Response` whose body is read from the host when the worker reads it.
"""

from urllib.parse import urlsplit

from _taipan import contract, host

from ._http import NULL_BODY_STATUSES, Request, Response, _init_kwargs

REDIRECT_MODES = (contract.REDIRECT_FOLLOW, contract.REDIRECT_MANUAL, contract.REDIRECT_ERROR)


def _request_of(input, init, kwargs) -> Request:
    options = _init_kwargs(init, kwargs)
    redirect = options.pop("redirect", contract.REDIRECT_FOLLOW)
    if redirect not in REDIRECT_MODES:
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


async def _response_of(future, through_binding: bool) -> Response:
    response = await host.response_of(future)
    status = response.status()
    # Through a binding, the host's own error (no such worker or object) is
    # raised, not returned (the host strips the marker from what callees and
    # upstreams send, so only it can set it).
    if through_binding and host.is_host_error(response):
        raise host.error_of(host.BodyReader(response).read_all())
    header_list = host.response_headers(response)
    if status == 101 and through_binding:
        # A Durable Object (or service) accepted a WebSocket: its client end,
        # for this worker to return.
        from ._websocket import WebSocket

        socket_id = dict(header_list).get(contract.HEADER_WEBSOCKET)
        if socket_id:
            response.__exit__(None, None, None)
            headers = [(k, v) for k, v in header_list if not k.startswith(contract.HEADER_PREFIX)]
            return Response(None, status=101, headers=headers, web_socket=WebSocket(_id=socket_id))
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
    if (request.headers.get("upgrade") or "").lower() == "websocket" and parts.scheme in ("http", "https", "ws", "wss"):
        if host.is_internal_host(parts.hostname):
            raise TypeError(f"fetch() cannot reach {parts.hostname!r}")
        from ._websocket import connect

        return await connect(request.url, list(request.headers))
    if parts.scheme not in ("http", "https"):
        raise TypeError(f"fetch() supports http and https URLs, got {request.url!r}")
    if not parts.netloc:
        raise TypeError(f"fetch() needs an absolute URL, got {request.url!r}")
    if host.is_internal_host(parts.hostname):
        raise TypeError(f"fetch() cannot reach {parts.hostname!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = [(name, value.encode("latin-1")) for name, value in request.headers]
    future = host.send_outbound(
        request.method, parts.scheme, parts.netloc, path, headers, _body_of(request), redirect=request._redirect
    )
    return await _response_of(future, through_binding=False)


def _headers_of(request: Request) -> list:
    """The request's headers for a binding's fetch; a worker's own
    `x-taipan-*` headers are dropped, as they would steer the host."""
    headers = []
    for name, value in request.headers:
        name = name.lower()
        if name == "upgrade" and value.lower() == "websocket":
            # Passed on as the host marks it (wasi:http refuses `Upgrade`).
            headers.append((contract.HEADER_UPGRADE, b"websocket"))
        elif not name.startswith(contract.HEADER_PREFIX) and name not in ("connection", "upgrade"):
            headers.append((name, value.encode("latin-1")))
    return headers


async def fetch_via(binding: str, input, init, kwargs, extra_headers=()) -> Response:
    """A binding's `fetch` (a service, assets, a Durable Object stub): the
    request goes to what the binding reaches, its URL in `HEADER_URL`."""
    request = _request_of(input, init, kwargs)
    headers = _headers_of(request)
    headers.append((contract.HEADER_URL, request.url.encode("utf-8")))
    headers.extend(extra_headers)
    path = f"/{binding}/{contract.OP_FETCH}"
    future = host.send(request.method, "http", contract.AUTHORITY_BINDING, path, headers, _body_of(request))
    return await _response_of(future, through_binding=True)
