"""Third-party HTTP clients through the host, patched as they are imported.

A sandbox has no `ssl`, and HTTP must obey the worker's outbound rules (its
TCP sockets are for database drivers). `http.client` is replaced outright
(`_taipan.httpclient`); libraries with their own connection code get a
patch applied right after their module is loaded, so a worker imports and
uses them unchanged:

- `httpx`: `HTTPTransport` / `AsyncHTTPTransport` (the defaults of `Client`
  and `AsyncClient`) send each request through the host (async requests
  suspend the handler's coroutine; sync ones block the sandbox, as Pyodide's
  `run_sync` would). httpcore, which needs `ssl`, is never used.
- `urllib3` (and so `requests`): its connection pools use a connection
  class built on the host-backed `http.client.HTTPConnection`.

Every request obeys the worker's outbound rules (subrequest limit, timeouts,
the SSRF rule under `taipan serve`).
"""

from pyodide.ffi import JsException

from . import contract, host, patching

_CONNECTION_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


def _start(method: str, scheme: str, authority: str, path: str, headers, body, timeout):
    """Hand one request to the host; the `future-incoming-response`."""
    header_list = [
        (name, value if isinstance(value, bytes) else value.encode("latin-1"))
        for name, value in headers
        if name.lower() not in _CONNECTION_HEADERS
    ]
    timeout_ms = timeout * 1000 if isinstance(timeout, (int, float)) else None
    # clients follow redirects themselves
    return host.send_outbound(
        method, scheme, authority, path, header_list, body or None, timeout_ms, contract.REDIRECT_MANUAL
    )


# -- httpx ------------------------------------------------------------------


def _patch_httpx(httpx) -> None:
    class HostBody(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __init__(self, reader):
            self._reader = reader

        def __iter__(self):
            yield from self._reader

        async def __aiter__(self):
            for chunk in self._reader:
                yield chunk

        def close(self):
            self._reader.close()

        async def aclose(self):
            self._reader.close()

    def parts(request):
        url = request.url
        headers = [(k.decode("latin-1"), v) for k, v in request.headers.raw]
        timeout = (request.extensions.get("timeout") or {}).get("read")
        path = url.raw_path.decode("ascii")
        return request.method, url.scheme, url.netloc.decode("ascii"), path, headers, timeout

    def to_response(request, response):
        headers = host.response_headers(response)
        return httpx.Response(
            response.status(),
            headers=headers,
            stream=HostBody(host.BodyReader(response)),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    def __init__(self, *args, **kwargs):
        pass  # no connection pool, no ssl context: the host connects

    def handle_request(self, request):
        method, scheme, authority, path, headers, timeout = parts(request)
        body = request.read()
        try:
            future = _start(method, scheme, authority, path, headers, body, timeout)
            response = host.run_sync(host.response_of(future))
        except JsException as e:
            raise httpx.ConnectError(str(e), request=request) from None
        return to_response(request, response)

    async def handle_async_request(self, request):
        method, scheme, authority, path, headers, timeout = parts(request)
        body = await request.aread()
        try:
            future = _start(method, scheme, authority, path, headers, body, timeout)
            response = await host.response_of(future)
        except JsException as e:
            raise httpx.ConnectError(str(e), request=request) from None
        return to_response(request, response)

    def close(self):
        pass

    async def aclose(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        pass

    sync, asynchronous = httpx.HTTPTransport, httpx.AsyncHTTPTransport
    sync.__init__, sync.handle_request, sync.close = __init__, handle_request, close
    sync.__enter__, sync.__exit__ = __enter__, __exit__
    asynchronous.__init__, asynchronous.handle_async_request, asynchronous.aclose = __init__, handle_async_request, aclose
    asynchronous.__aenter__, asynchronous.__aexit__ = __aenter__, __aexit__


# -- urllib3 ----------------------------------------------------------------


def _patch_urllib3(urllib3) -> None:
    from urllib3 import connection

    # urllib3's connections subclass http.client's, which is host-backed
    # here; only their socket handling must go.
    for cls in (connection.HTTPConnection, connection.HTTPSConnection):
        cls.connect = lambda self: None
        cls.is_closed = property(lambda self: False)
        cls.is_connected = property(lambda self: True)
        cls.has_connected_to_proxy = property(lambda self: False)


# Applied once the whole package has been imported.
PATCHES = {
    "httpx": _patch_httpx,
    "urllib3": _patch_urllib3,
}


def install() -> None:
    patching.register(PATCHES)
