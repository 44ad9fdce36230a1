"""Calls from the worker to the host, as `wasi:http` outgoing requests.

Binding calls go to `http://{AUTHORITY_BINDING}/<BINDING>/<op>` (the host
routes them to the binding's implementation); anything else is an outbound
subrequest.
Waiting for a response suspends the calling coroutine on the sandbox's event
loop, so `asyncio.gather` over several calls runs them concurrently.

The binding protocol (`contract.py`; the wire format is described in
`crates/taipan-guest/src/contract.rs`): the body is the arguments as one line
of JSON, a newline, then the payload if any. A reply mirrors it: a JSON body;
or, for an op that answers a payload (`call(..., payload=True)`), JSON about
the payload as one line (`null` for a miss), a newline, then the payload. A
failed call answers 4xx/5xx with `{"name": ..., "message": ...}`.
"""

import asyncio
import itertools
import json
from urllib.parse import urlsplit

from componentize_py_types import Err
from pyodide.ffi import JsException, json_default
from wit_world.imports import outgoing_handler, streams, types

from _taipan import contract

READ_CHUNK = 1 << 20

# While > 0 (inside `run_sync`), waits block the sandbox instead of suspending.
_sync_depth = 0


class HostError(JsException):
    """An error from a binding, as Workers raises it: `name` and `message`."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}" if name and name != "Error" else message)
        self.name = name
        self.message = message


# Shown in tracebacks as Pyodide names JavaScript errors.
HostError.__module__, HostError.__qualname__, HostError.__name__ = "pyodide.ffi", "JsException", "JsException"


def _method(name: str):
    cls = getattr(types, "Method_" + name.title(), None)
    return cls() if cls is not None and name.isupper() else types.Method_Other(name)


def send(method: str, scheme: str, authority: str, path: str, headers, body=None, timeout_ms=None):
    """Start an outgoing request; returns the `future-incoming-response`.

    `headers` is a list of (name, bytes); `body` is bytes, an iterable of
    chunks, or None. The body is written after the request is handed to the
    host, so the host consumes it as it is written.
    """
    request = types.OutgoingRequest(types.Fields.from_list(headers))
    request.set_method(_method(method))
    request.set_scheme(types.Scheme_Https() if scheme == "https" else types.Scheme_Http())
    request.set_authority(authority)
    request.set_path_with_query(path or "/")
    outgoing_body = request.body()
    options = None
    if timeout_ms:
        options = types.RequestOptions()
        options.set_first_byte_timeout(int(timeout_ms * 1_000_000))
    try:
        future = outgoing_handler.handle(request, options)
    except Err as e:
        outgoing_body.__exit__(None, None, None)
        raise _error_code(e.value) from None
    stream = outgoing_body.write()
    try:
        if isinstance(body, (bytes, bytearray, memoryview)):
            write_all(stream, bytes(body))
        elif body is not None:
            for chunk in body:
                write_all(stream, chunk.encode() if isinstance(chunk, str) else bytes(chunk))
    except Err:
        pass  # the host stopped reading (e.g. it refused the request); its answer says why
    finally:
        stream.__exit__(None, None, None)
    try:
        types.OutgoingBody.finish(outgoing_body, None)
    except Err:
        pass
    return future


async def response_of(future):
    """Wait for the response of `send` without blocking other coroutines."""
    pollable = future.subscribe()
    try:
        await wait(pollable)
    finally:
        pollable.__exit__(None, None, None)
    result = future.get()
    future.__exit__(None, None, None)
    if result is None or isinstance(result, Err):
        raise JsException("the host response was lost")
    inner = result.value
    if isinstance(inner, Err):
        raise _error_code(inner.value)
    return inner.value


async def wait(pollable) -> None:
    loop = asyncio.events._get_running_loop()
    if _sync_depth or loop is None or not hasattr(loop, "wait_pollable"):
        pollable.block()
        return
    await loop.wait_pollable(pollable)


def response_headers(response) -> list:
    fields = response.headers()
    entries = [(name, value.decode("latin-1")) for name, value in fields.entries()]
    fields.__exit__(None, None, None)
    return entries


class BodyReader:
    """An incoming response body, read as it arrives: whole (`read_all`),
    chunk by chunk (iterate, once), or its first line (`read_line`) and then
    the rest."""

    def __init__(self, response):
        self._response = response
        self._chunks = None  # the body's chunks, once reading has started
        self._pending = b""  # read past `read_line`'s newline: yielded first
        self._done = False

    def _open(self):
        """The body's chunks as the host sends them; closing this generator
        (or reading it to the end) releases the body and the response."""
        body = self._response.consume()
        stream = body.stream()
        try:
            while True:
                try:
                    chunk = stream.blocking_read(READ_CHUNK)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise JsException(f"reading the response body failed: {e.value}") from None
                if chunk:
                    yield chunk
        finally:
            stream.__exit__(None, None, None)
            types.IncomingBody.finish(body).__exit__(None, None, None)
            self._response.__exit__(None, None, None)

    def read_line(self) -> bytes:
        """The body up to its first newline (which is dropped), read no further
        than the chunk holding it; the bytes after the newline are the first
        this reader then yields."""
        if self._done:
            raise JsException("the response body was already read")
        if self._chunks is None:
            self._chunks = self._open()
        buffer = self._pending
        while (end := buffer.find(b"\n")) < 0:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise JsException("the host's reply ended before its first line")
            buffer += chunk
        self._pending = buffer[end + 1 :]
        return buffer[:end]

    def __iter__(self):
        if self._done:
            return
        self._done = True
        pending, self._pending = self._pending, b""
        chunks = self._chunks if self._chunks is not None else self._open()
        try:
            if pending:
                yield pending
            yield from chunks
        finally:
            chunks.close()  # left early: still release the response

    def read_all(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        if self._chunks is not None:
            self._chunks.close()  # its `finally` releases the response
        else:
            self._response.__exit__(None, None, None)


async def call(binding: str, op: str, args=None, body=None, payload: bool = False):
    """Call `op` on binding `binding`. Returns the JSON reply; or, for an op
    that answers a payload (`payload=True`), `(meta, reader)`: the reply's
    first line as JSON (None for a miss) and a BodyReader of the payload after
    it, unread. A failed call raises HostError."""
    # json.dumps escapes newlines in strings: the first b"\n" ends the arguments.
    line = json.dumps(args if args is not None else {}, default=json_default).encode() + b"\n"
    if body is None:
        chunks = line
    elif isinstance(body, (bytes, bytearray, memoryview)):
        chunks = (line, body)
    elif isinstance(body, str):
        chunks = (line, body.encode())
    else:
        chunks = itertools.chain((line,), body)
    future = send("POST", "http", contract.AUTHORITY_BINDING, f"/{binding}/{op}", [], chunks)
    response = await response_of(future)
    status = response.status()
    reader = BodyReader(response)
    if status >= 400:
        raise error_of(reader.read_all())
    if payload:
        return json.loads(reader.read_line()), reader
    data = reader.read_all()
    return json.loads(data) if data else None


def call_now(binding: str, op: str, args=None):
    """Call `op` on a binding the host answers before its call returns
    (`WEBSOCKET_BINDING`): the arguments travel in a header, the reply is
    ready at once, so calls keep their order and nothing waits on the loop."""
    line = json.dumps(args if args is not None else {}, default=json_default, separators=(",", ":"))
    headers = [(contract.HEADER_ARGS, line.encode("ascii"))]
    future = send("POST", "http", contract.AUTHORITY_BINDING, f"/{binding}/{op}", headers)
    pollable = future.subscribe()
    pollable.block()
    pollable.__exit__(None, None, None)
    result = future.get()
    future.__exit__(None, None, None)
    if result is None or isinstance(result, Err) or isinstance(result.value, Err):
        raise JsException("the host did not answer a WebSocket call")
    response = result.value.value
    status = response.status()
    data = BodyReader(response).read_all()
    if status >= 400:
        raise error_of(data)
    return json.loads(data) if data else None


async def call_header(binding: str, op: str, args=None):
    """`call_now`'s call shape (arguments in a header) for the one such op
    that takes time (an outbound WebSocket's `connect`): awaited."""
    line = json.dumps(args if args is not None else {}, default=json_default, separators=(",", ":"))
    headers = [(contract.HEADER_ARGS, line.encode("ascii"))]
    future = send("POST", "http", contract.AUTHORITY_BINDING, f"/{binding}/{op}", headers)
    response = await response_of(future)
    status = response.status()
    data = BodyReader(response).read_all()
    if status >= 400:
        raise error_of(data)
    return json.loads(data) if data else None


def error_of(data: bytes) -> "HostError":
    """The exception a host error's body (`{"name", "message"}`) stands for."""
    try:
        error = json.loads(data)
        return HostError(error.get("name", "Error"), error.get("message", ""))
    except (ValueError, AttributeError):
        return HostError("Error", data.decode("utf-8", "replace"))


def is_host_error(response) -> bool:
    """Whether `response` is an error the host made, not a callee's answer."""
    return any(
        name == contract.HEADER_ERROR and value == contract.ERROR_MARK
        for name, value in response_headers(response)
    )


def send_outbound(method, scheme, authority, path, headers, body=None, timeout_ms=None, redirect=contract.REDIRECT_FOLLOW):
    """`send` for a subrequest to the network (`fetch`, the patched HTTP
    clients): never to an internal authority, never with a worker's own
    `x-taipan-*` headers (they would steer the host); `redirect` is the mode
    the host follows redirects in."""
    if is_internal_host(urlsplit(f"//{authority}").hostname):
        raise JsException(f"cannot reach {authority!r}")
    headers = [(name, value) for name, value in headers if not name.lower().startswith(contract.HEADER_PREFIX)]
    headers.append((contract.HEADER_REDIRECT, redirect.encode()))
    return send(method, scheme, authority, path, headers, body, timeout_ms)


def is_internal_host(hostname) -> bool:
    """Whether `hostname` is one of the host's internal authorities, which a
    worker's own requests may not use."""
    return bool(hostname) and hostname.lower().startswith(contract.INTERNAL_HOST_PREFIX)


def run_sync(awaitable):
    """Run `awaitable` to completion now, blocking this sandbox while it waits
    for the host (Pyodide's `run_sync`, for code that cannot be async)."""
    global _sync_depth
    coro = awaitable.__await__() if not hasattr(awaitable, "send") else awaitable
    _sync_depth += 1
    try:
        while True:
            try:
                yielded = coro.send(None)
            except StopIteration as done:
                return done.value
            if yielded is not None and not (hasattr(yielded, "done") and yielded.done()):
                raise RuntimeError(
                    "run_sync can only wait for bindings and fetch; "
                    f"it cannot wait for {type(yielded).__name__}"
                )
    finally:
        _sync_depth -= 1


def write_all(stream, data: bytes) -> None:
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        budget = stream.check_write()
        if budget == 0:
            pollable = stream.subscribe()
            pollable.block()
            pollable.__exit__(None, None, None)
            continue
        end = offset + budget
        stream.write(bytes(view[offset:end]))
        offset = end
    stream.blocking_flush()


def _error_code(code) -> JsException:
    name = type(code).__name__.removeprefix("ErrorCode_")
    detail = getattr(code, "value", None)
    if name == "InternalError" and detail:
        return JsException(str(detail))
    words = "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
    return JsException(f"fetch failed: {words}" + (f" ({detail})" if detail else ""))
