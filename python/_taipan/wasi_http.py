"""The bridge between `wasi:http` resources and the SDK's Request/Response."""

from _taipan import contract
from _taipan.host import write_all
from componentize_py_types import Err, Ok
from wit_world.imports import streams, types
from workers import Headers, Request, Response

try:
    # Taipan's one-call response (wit/world.wit); a standalone build, made
    # for any wasi:http host, has wasi:http alone.
    from wit_world.imports import response as whole_response
except ImportError:
    whole_response = None

READ_CHUNK = 1 << 20
NO_BODY_STATUSES = (101, 204, 205, 304)
# wasi:io allows up to 4096 bytes in one blocking write-and-flush: one host call.
SMALL_WRITE = 4096
# Bodies up to this size go to the host in the one-call response; larger
# ones stream through wasi:http, so the host never copies a large body at once.
WHOLE_BODY_MAX = 1 << 20


class IncomingBodyReader:
    """Reads a request body from the host on first use, in chunks, joined once."""

    def __init__(self, request: "types.IncomingRequest"):
        self._request = request

    def __iter__(self):
        """The body chunk by chunk (e.g. streamed on into R2)."""
        if getattr(self._request, "handle", None) is None:
            raise RuntimeError("the request body was first read after the request ended; read it while handling the request")
        body = self._request.consume()
        stream = body.stream()
        try:
            while True:
                try:
                    yield stream.blocking_read(READ_CHUNK)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise
        finally:
            stream.__exit__(None, None, None)
            types.IncomingBody.finish(body).__exit__(None, None, None)

    def read_all(self) -> bytes:
        chunks = list(self)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class IncomingRequest(Request):
    """A request from the host. The URL and headers are fetched on first use:
    many handlers never read them, and each host call costs."""

    def __init__(self, incoming: "types.IncomingRequest", authority: str | None, method: str):
        # Request.__init__ would build an empty Headers first; set fields directly.
        self._authority = authority
        self._url = None
        self.method = method
        self.cf = {}
        self._incoming = incoming
        self._headers = None
        self._body_source = IncomingBodyReader(incoming)

    @property
    def url(self) -> str:
        if self._url is None:
            self._check_open("url")
            scheme = self._incoming.scheme()
            if scheme is None or type(scheme).__name__ == "Scheme_Http":
                scheme = "http"
            elif type(scheme).__name__ == "Scheme_Https":
                scheme = "https"
            else:
                scheme = scheme.value
            self._url = f"{scheme}://{self._authority or 'localhost'}{self._incoming.path_with_query() or '/'}"
        return self._url

    @url.setter
    def url(self, value) -> None:
        self._url = str(value)

    def _check_open(self, what: str) -> None:
        # The host's request is dropped once its call is over (after any
        # waitUntil work); what was not read by then cannot be.
        if getattr(self._incoming, "handle", None) is None:
            raise RuntimeError(
                f"request.{what} was first read after the request ended; read it while handling the request"
            )

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._check_open("headers")
            fields = self._incoming.headers()
            headers = Headers()
            # The host's names are valid and lowercase, its values valid:
            # added as they are (not through `append`'s checks, whose name
            # cache is for the worker's own names, not clients').
            items = headers._items
            for name, value in fields.entries():
                if name == contract.HEADER_UPGRADE:
                    # wasi:http hides hop-by-hop headers; the host marks an
                    # upgrade so handlers can check `Upgrade` as on Workers.
                    items.append(("upgrade", value.decode("latin-1")))
                    items.append(("connection", "Upgrade"))
                    continue
                items.append((name, value.decode("latin-1")))
            fields.__exit__(None, None, None)
            self._headers = headers
        return self._headers

    @headers.setter
    def headers(self, value) -> None:
        self._headers = Headers(value)


def to_request(incoming: "types.IncomingRequest", authority: str | None) -> Request:
    """`authority`: what `incoming.authority()` answered (the caller asks first)."""
    method = incoming.method()
    name = type(method).__name__
    method = method.value if name == "Method_Other" else _METHODS.get(name) or name[len("Method_") :].upper()
    return IncomingRequest(incoming, authority, method)


_METHODS = {f"Method_{m.title()}": m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")}


class Outparam:
    """The response slot of one request; remembers whether a response went out."""

    def __init__(self, out: "types.ResponseOutparam"):
        self.out = out
        self.used = False

    def set(self, outgoing) -> None:
        self.used = True
        types.ResponseOutparam.set(self.out, Ok(outgoing))


def send_response(response: Response, out: Outparam, head_only: bool) -> None:
    """Write `response` to the host: status and headers first, then the body."""
    body = response._body_source
    # A body known in full gets a content-length (as on Workers); HEAD
    # responses carry none, and statuses without a body never do.
    if (
        isinstance(body, (bytes, type(None)))
        and not head_only
        and response.status not in NO_BODY_STATUSES
        and not response.headers.has("content-length")
    ):
        response.headers.set("content-length", str(len(body or b"")))

    pairs = [(name, value.encode("latin-1")) for name, value in response.headers if name not in _HOP_BY_HOP]
    if response.webSocket is not None:
        socket_id = response.webSocket._socket_id()
        if socket_id is None:
            raise TypeError(
                "the response's web_socket was never accepted: call server.accept() "
                "(or ctx.acceptWebSocket(server)) before returning the client end"
            )
        pairs.append((contract.HEADER_WEBSOCKET, socket_id.encode("ascii")))
    if whole_response is not None and not head_only and (body is None or (isinstance(body, bytes) and len(body) <= WHOLE_BODY_MAX)):
        try:
            whole_response.respond(out.out, response.status, pairs, body or b"")
        except Err as e:
            out.used = True  # the host answered the client with a 500
            raise RuntimeError(f"the host refused the response: {e.value}") from None
        out.used = True
        return
    outgoing = types.OutgoingResponse(types.Fields.from_list(pairs))
    outgoing.set_status_code(response.status)
    outgoing_body = outgoing.body()
    out.set(outgoing)

    stream = outgoing_body.write()
    try:
        if not head_only:
            if isinstance(body, bytes) and len(body) <= SMALL_WRITE:
                if body:
                    stream.blocking_write_and_flush(body)
            elif isinstance(body, bytes):
                write_all(stream, body)
            elif body is not None:
                _write_chunks(stream, body)
    finally:
        stream.__exit__(None, None, None)
    types.OutgoingBody.finish(outgoing_body, None)


# Headers of one connection, which wasi:http refuses from a guest.
_HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "http2-settings")


def send_error(out: Outparam, status: int, text: str) -> None:
    send_response(Response(text, status=status), out, head_only=False)


def _write_chunks(stream, source) -> None:
    if hasattr(source, "__aiter__"):
        from _taipan.loop import run

        async def drain():
            async for chunk in source:
                write_all(stream, _as_bytes(chunk))

        run(drain())
    else:
        for chunk in source:
            write_all(stream, _as_bytes(chunk))


def _as_bytes(chunk) -> bytes:
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
