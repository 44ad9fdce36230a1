"""The Cache API: `caches.default` and `await caches.open(name)`, each with
`match`, `put` and `delete`, as Cloudflare documents them
(developers.cloudflare.com/workers/runtime-apis/cache/).

Reached as `from js import caches` (or `from workers import caches`). The
checks that make `put` throw on Workers (a non-GET request, a 206, `Vary:
*`) happen here; whether and for how long a response is stored
(`Cache-Control`, `Expires`, `Set-Cookie`), `Vary`, conditional requests and
ranges are the host's (`crates/taipan-bindings/src/cache/`), which keeps
every cache of the worker in its state folder.
"""

from _taipan import contract, host
from _taipan.webapi import js_error

from ._args import options as _options
from ._http import NULL_BODY_STATUSES, Request, Response

# workerd refuses cache names of 1024 bytes or more.
MAX_CACHE_NAME_BYTES = 1024

# CacheQueryOptions that Workers does not implement.
UNSUPPORTED_OPTIONS = ("ignoreSearch", "ignoreVary", "cacheName")


def _request_of(request) -> Request:
    """The key: a Request, or a URL (a str, or a `URL` object) for a GET."""
    if isinstance(request, Request):
        return request
    if isinstance(request, str):
        return Request(request)
    href = getattr(request, "href", None)
    if isinstance(href, str):
        return Request(href)
    raise TypeError(f"a cache key must be a Request or a URL, got {type(request).__name__}")


def _ignore_method(options, kwargs, method: str) -> bool:
    options = _options(options, kwargs)
    for name in UNSUPPORTED_OPTIONS:
        if options.get(name):
            raise TypeError(f"Cache.{method}(): the {name} option is not supported by Workers")
    return bool(options.get("ignoreMethod"))


def _headers(request: Request) -> list:
    return [[name, value] for name, value in request.headers]


async def _payload(response: Response):
    """The response's body for the host (bytes or chunks); the response's
    body is used once `put` has been called, as on Workers."""
    if response.bodyUsed:
        raise TypeError("body has already been used")
    source = response._body_source
    if hasattr(source, "__aiter__"):
        return await response._take_body_async()
    response._body_used = True
    if source is None or isinstance(source, bytes):
        return source or b""
    return source  # chunks (a fetched body streams from the host)


def _unimplemented(what: str):
    raise js_error("Error", f"Failed to execute '{what}': the method is not implemented.")


class Cache:
    """One cache: `caches.default`, or what `caches.open(name)` returns."""

    def __init__(self, name=None):
        self._name = name

    async def match(self, request, options=None, **kwargs):
        """The stored response for `request` (a Request or URL), or None.
        A non-GET request finds nothing unless `ignoreMethod` is set."""
        request = _request_of(request)
        ignore_method = _ignore_method(options, kwargs, "match")
        if request.method != "GET" and not ignore_method:
            return None
        args = {"cache": self._name, "url": request.url, "headers": _headers(request)}
        meta, reader = await host.call(contract.CACHE_BINDING, "match", args, payload=True)
        if meta is None:
            reader.close()
            return None
        status = meta["status"]
        body = reader
        if status in NULL_BODY_STATUSES:
            reader.close()
            body = None
        return Response(body, status=status, headers=meta["headers"])

    async def put(self, request, response) -> None:
        """Store `response` under `request` (a GET Request or a URL). Resolves
        whether or not the response was stored (its headers decide), as on
        Workers; a non-GET request, a 206 and `Vary: *` raise TypeError."""
        request = _request_of(request)
        if not isinstance(response, Response):
            raise TypeError(f"Cache.put() takes a Response, got {type(response).__name__}")
        if request.method != "GET":
            raise TypeError("Cannot cache response to non-GET request.")
        if response.status == 206:
            raise TypeError("Cannot cache response to a range request (206 Partial Content).")
        if response.status == 101:
            raise TypeError("Cannot cache WebSocket upgrade response.")
        if "*" in (response.headers.get("vary") or ""):
            raise TypeError("Cannot cache response with 'Vary: *' header.")
        if response.status == 304:
            return None  # Workers drops a 304 silently (its body is left unread)
        body = await _payload(response)
        args = {
            "cache": self._name,
            "url": request.url,
            "requestHeaders": _headers(request),
            "status": response.status,
            "headers": [[name, value] for name, value in response.headers],
        }
        await host.call(contract.CACHE_BINDING, "put", args, body)
        return None

    async def delete(self, request, options=None, **kwargs) -> bool:
        """Remove the response stored under `request`; whether there was one.
        A non-GET request removes nothing unless `ignoreMethod` is set."""
        request = _request_of(request)
        ignore_method = _ignore_method(options, kwargs, "delete")
        if request.method != "GET" and not ignore_method:
            return False
        result = await host.call(contract.CACHE_BINDING, "delete", {"cache": self._name, "url": request.url})
        return bool(result["deleted"])

    async def add(self, request):
        _unimplemented("add")

    async def addAll(self, requests):
        _unimplemented("addAll")

    async def matchAll(self, request=None, options=None):
        _unimplemented("matchAll")

    async def keys(self, request=None, options=None):
        _unimplemented("keys")

    add_all, match_all = addAll, matchAll

    def __repr__(self) -> str:
        return "<Cache default>" if self._name is None else f"<Cache {self._name!r}>"


class CacheStorage:
    """`caches`: the default cache and named ones."""

    def __init__(self):
        self._default = Cache()

    @property
    def default(self) -> Cache:
        return self._default

    async def open(self, name) -> Cache:
        if not isinstance(name, str):
            raise TypeError(f"caches.open() takes the cache's name as a str, got {type(name).__name__}")
        if len(name.encode("utf-8")) >= MAX_CACHE_NAME_BYTES:
            raise TypeError("Cache name is too long.")
        return Cache(name)

    async def has(self, name):
        _unimplemented("has")

    async def delete(self, name):
        _unimplemented("delete")

    async def keys(self):
        _unimplemented("keys")

    async def match(self, request, options=None):
        _unimplemented("match")


caches = CacheStorage()
