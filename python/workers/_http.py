"""`Request` and `Response`, with the Fetch API's behaviour as Workers code relies on it."""

import json as _json

from pyodide.ffi import JsBuffer, json_default

from . import _forms
from ._headers import Headers, _unwrap

TEXT_PLAIN = "text/plain;charset=UTF-8"
APPLICATION_JSON = "application/json"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class _Body:
    """The body mixin shared by Request and Response: read once, as text, JSON or bytes."""

    _body_source = None  # bytes, an iterable of chunks, or an object with read_all()
    _body_used = False

    def _take_body(self) -> bytes:
        if self._body_used:
            raise TypeError("body has already been used")
        self._body_used = True
        source = self._body_source
        if source is None:
            return b""
        if isinstance(source, bytes):
            return source
        read_all = getattr(source, "read_all", None)
        if read_all is not None:
            return read_all()
        return b"".join(_chunk(c) for c in source)

    async def _take_body_async(self) -> bytes:
        if hasattr(self._body_source, "__aiter__"):
            if self._body_used:
                raise TypeError("body has already been used")
            self._body_used = True
            return b"".join([_chunk(c) async for c in self._body_source])
        return self._take_body()

    @property
    def bodyUsed(self) -> bool:
        return self._body_used

    body_used = bodyUsed

    async def bytes(self) -> bytes:
        return await self._take_body_async()

    async def arrayBuffer(self) -> JsBuffer:
        """The body as bytes that also answer Pyodide's `to_bytes()` / `to_py()`."""
        return JsBuffer(await self._take_body_async())

    array_buffer = arrayBuffer

    async def text(self) -> str:
        return (await self._take_body_async()).decode("utf-8", errors="replace")

    async def json(self):
        return _json.loads(await self._take_body_async())

    async def formData(self) -> "_forms.FormData":
        """The body as `FormData`: multipart/form-data or urlencoded, by content type."""
        return _forms.parse(self.headers.get("content-type") or "", await self._take_body_async())

    form_data = formData

    async def blob(self) -> "_forms.Blob":
        return _forms.Blob([await self._take_body_async()], self.headers.get("content-type") or "")


# Statuses whose responses have no body (Fetch standard: "null body status").
NULL_BODY_STATUSES = (101, 204, 205, 304)


class Response(_Body):
    """An HTTP response. `Response("text")` sends `text/plain;charset=UTF-8`,
    `Response.json(data)` sends `application/json`, bytes send no content type
    unless one is given."""

    def __init__(self, body=None, status=200, statusText=None, headers=None, *, status_text=None, web_socket=None, webSocket=None):
        status = _status(status)
        self.webSocket = web_socket if web_socket is not None else webSocket
        if self.webSocket is not None and status != 101:
            raise _range_error("a response with a webSocket must have status 101")
        if status == 101 and self.webSocket is None:
            raise _range_error("a 101 response needs web_socket= (the client end of a WebSocketPair)")
        self.status = status
        self.statusText = status_text if status_text is not None else (statusText or "")
        self.headers = Headers(headers)
        body = _typed_body(body, self.headers)
        if isinstance(body, str):
            body = body.encode("utf-8")
            if not self.headers.has("content-type"):
                self.headers.set("content-type", TEXT_PLAIN)
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif body is not None and not isinstance(body, bytes):
            body = _unwrap_body(body)
        if status in NULL_BODY_STATUSES and body is not None:
            # An empty body is no body (what frameworks send with a 204);
            # anything else is the Fetch standard's TypeError.
            if body != b"":
                raise TypeError(f"a response with status {status} cannot have a body")
            body = None
        self._body_source = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    @property
    def web_socket(self):
        return self.webSocket

    @property
    def status_text(self) -> str:
        return self.statusText

    @property
    def body(self):
        return self._body_source

    @property
    def js_object(self):
        return self

    @classmethod
    def json(cls, data, status=200, statusText=None, headers=None, **kwargs):
        headers = Headers(headers)
        if not headers.has("content-type"):
            headers.set("content-type", APPLICATION_JSON)
        body = _json.dumps(_unwrap(data), separators=(",", ":"), ensure_ascii=False, default=json_default)
        return cls(body.encode("utf-8"), status=status, statusText=statusText, headers=headers, **kwargs)

    @classmethod
    def redirect(cls, url, status=302):
        if status not in REDIRECT_STATUSES:
            raise ValueError(f"invalid redirect status {status}; use one of {REDIRECT_STATUSES}")
        return cls(None, status=status, headers={"location": str(url)})

    @classmethod
    def new(cls, body=None, init=None, **kwargs):
        """The JavaScript constructor, as `js.Response.new(body, init)`."""
        return cls(body, **_init_kwargs(init, kwargs))

    def clone(self):
        if not isinstance(self._body_source, (bytes, type(None))):
            if hasattr(self._body_source, "__aiter__"):
                raise TypeError("a response with an async-iterable body cannot be cloned")
            self._body_source, self._body_used = self._take_body(), False
        return Response(self._body_source, status=self.status, statusText=self.statusText, headers=self.headers, web_socket=self.webSocket)

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class _JsonMethod:
    """`Response.json(data)` builds a response; `await response.json()` reads one."""

    def __get__(self, instance, owner):
        if instance is None:
            return owner._build_json
        return instance._read_json


Response._build_json = classmethod(Response.__dict__["json"].__func__)
Response._read_json = _Body.json
Response.json = _JsonMethod()


class Request(_Body):
    """An incoming (or outgoing) HTTP request."""

    def __init__(self, input, method=None, headers=None, body=None, *, cf=None, **init):
        if isinstance(input, Request):
            method = method or input.method
            headers = headers if headers is not None else input.headers
            if body is None and not input._body_used:
                body = input._body_source
            input = input.url
        self.url = str(input)
        self.method = (method or init.pop("method", None) or "GET").upper()
        self.headers = Headers(headers if headers is not None else init.pop("headers", None))
        body = _typed_body(body, self.headers)
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        self._body_source = body
        self.cf = cf or {}

    @classmethod
    def new(cls, input, init=None, **kwargs):
        return cls(input, **_init_kwargs(init, kwargs))

    @property
    def js_object(self):
        return self

    # The published SDK keeps the JavaScript request here; packages written
    # against it (django-cf) read it: here the request is its own.
    _js_request = js_object

    @property
    def body(self):
        return self._body_source

    def clone(self):
        # Read the body once and give both copies the bytes (a tee, as in JS).
        body = self._take_body() if self._body_source is not None else None
        self._body_source, self._body_used = body, False
        return Request(self.url, method=self.method, headers=self.headers, body=body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


def _range_error(message: str) -> Exception:
    from _taipan.webapi import js_error

    return js_error("RangeError", message)


def _status(status) -> int:
    try:
        status = int(status)
    except (TypeError, ValueError):
        raise TypeError(f"status must be an int, got {status!r}") from None
    if not 200 <= status <= 599 and status != 101:
        raise ValueError(f"status {status} is outside the range 200-599")
    return status


def _init_kwargs(init, extra) -> dict:
    """Turn a JS-style init (a dict, a to_js object, or None) into keyword arguments."""
    init = _unwrap(init) if init is not None else {}
    if not isinstance(init, dict):
        init = {k: getattr(init, k) for k in ("status", "statusText", "headers", "method", "body") if hasattr(init, k)}
    merged = dict(init)
    merged.update(extra)
    return merged


def _typed_body(body, headers: Headers):
    """A FormData or Blob body as bytes, with its content type unless one is set."""
    if isinstance(body, _forms.FormData):
        body, content_type = _forms.encode(body)
    elif isinstance(body, _forms.Blob):
        body, content_type = body._data, body.type
    else:
        return body
    if content_type and not headers.has("content-type"):
        headers.set("content-type", content_type)
    return body


def _unwrap_body(body):
    body = _unwrap(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "__iter__") or hasattr(body, "__aiter__"):
        return body  # streamed chunk by chunk when sent
    raise TypeError(f"unsupported body type {type(body).__name__}; use str, bytes or an iterable of bytes")


def _chunk(chunk) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    return bytes(chunk)
