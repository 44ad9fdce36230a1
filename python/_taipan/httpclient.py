"""`http.client` over the host's HTTP client.

HTTP leaves a sandbox as a `wasi:http` request (its TCP sockets have no
`ssl`, and are for database drivers), which the host sends with the worker's
outbound rules (subrequest limit, timeouts, SSRF refusal under `taipan serve`). `install()` replaces
`http.client.HTTPConnection` and `HTTPSConnection` with classes that keep
their interface (`request`/`putrequest`/`putheader`/`endheaders`/`send`,
`getresponse`) but send each request through the host, synchronously, as
Pyodide's `run_sync` would. `urllib.request` and any library built on
`http.client` then work unchanged. The response is a real
`http.client.HTTPResponse` reading from the host's body stream, so it
streams, and redirects are left to the caller (as with a socket).
"""

import http
import http.client
import io
from urllib.parse import urlsplit

from pyodide.ffi import JsException

from . import contract, host

# Headers that describe the connection, not the request: the host owns them.
_CONNECTION_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


class _HostBody(io.RawIOBase):
    """The head of the response, then its body chunks from the host."""

    def __init__(self, head: bytes, chunks):
        self._pending = head
        self._chunks = chunks

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _HostSocket:
    """What `HTTPResponse` needs of a socket: `makefile`."""

    def __init__(self, stream: io.BufferedReader):
        self._stream = stream

    def makefile(self, mode="rb", *args, **kwargs):
        return self._stream

    def close(self) -> None:
        pass


class _NoSocket:
    """Stands where the socket would be, for code that tunes it (urllib3)."""

    def settimeout(self, timeout) -> None:
        pass

    def gettimeout(self):
        return None

    def setsockopt(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


class HTTPConnection(http.client.HTTPConnection):
    """`http.client.HTTPConnection` whose requests go through the host."""

    scheme = "http"

    # There is never a socket; assignments (`self.sock = None`) are ignored.
    sock = property(lambda self: _NoSocket(), lambda self, value: None)

    def __init__(self, *args, **kwargs):
        kwargs.pop("context", None)  # TLS is the host's business
        kwargs.pop("check_hostname", None)
        super().__init__(*args, **kwargs)
        self._taipan_reset()

    def _taipan_reset(self) -> None:
        self._t_method = None
        self._t_url = None
        self._t_headers = []
        self._t_body = []
        self._t_response = None

    def connect(self) -> None:
        """Nothing to open: each request is a host call."""

    def close(self) -> None:
        self._taipan_reset()
        super().close()

    def putrequest(self, method, url, skip_host=False, skip_accept_encoding=False):
        if self._t_method is not None or self._t_response is not None:
            raise http.client.CannotSendRequest("the previous request is not finished")
        self._taipan_reset()
        self._t_method = method
        self._t_url = url or "/"
        if not skip_host:
            self._t_headers.append(("Host", self._authority()))
        if not skip_accept_encoding:
            self._t_headers.append(("Accept-Encoding", "identity"))

    def putheader(self, header, *values):
        if self._t_method is None:
            raise http.client.CannotSendHeader("putheader before putrequest")
        name = header.decode("latin-1") if isinstance(header, bytes) else str(header)
        parts = []
        for value in values:
            if isinstance(value, bytes):
                parts.append(value.decode("latin-1"))
            else:
                parts.append(str(value))
        if name.lower() in _CONNECTION_HEADERS:
            return
        if name.lower() == "host":
            self._t_headers = [(k, v) for k, v in self._t_headers if k.lower() != "host"]
        self._t_headers.append((name, ", ".join(parts)))

    def endheaders(self, message_body=None, *, encode_chunked=False):
        if message_body is not None:
            self.send(message_body)
        # `request()` hands the whole body here: send now, so that connection
        # errors surface from `request()` as with a socket. A body still to
        # come through `send()` (a declared length) waits for `getresponse()`.
        declared = next((v for k, v in self._t_headers if k.lower() == "content-length"), "0")
        if message_body is not None or declared.strip() in ("", "0"):
            self._t_dispatch()

    def send(self, data):
        if hasattr(data, "read"):
            while True:
                chunk = data.read(self.blocksize)
                if not chunk:
                    break
                self._t_body.append(chunk.encode("iso-8859-1") if isinstance(chunk, str) else bytes(chunk))
        elif isinstance(data, str):
            self._t_body.append(data.encode("iso-8859-1"))
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self._t_body.append(bytes(data))
        else:
            for chunk in data:
                self._t_body.append(chunk.encode("iso-8859-1") if isinstance(chunk, str) else bytes(chunk))

    def _t_dispatch(self) -> None:
        if self._t_method is None:
            raise http.client.ResponseNotReady("no request was sent")
        method, target = self._t_method, self._t_url
        scheme, authority, path = self.scheme, self._authority(), target
        if "://" in target:  # absolute form (through a proxy)
            parts = urlsplit(target)
            scheme, authority = parts.scheme, parts.netloc
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(name, value.encode("latin-1")) for name, value in self._t_headers]
        body = b"".join(self._t_body) if self._t_body else None
        timeout_ms = self.timeout * 1000 if isinstance(self.timeout, (int, float)) else None
        self._taipan_reset()
        try:
            future = host.send_outbound(
                method, scheme, authority, path, headers, body, timeout_ms, contract.REDIRECT_MANUAL
            )
            self._t_response = (method, host.run_sync(host.response_of(future)))
        except JsException as e:
            raise ConnectionError(f"{method} {scheme}://{authority}{path} failed: {e}") from None

    def getresponse(self):
        if self._t_response is None:
            self._t_dispatch()
        (method, response), self._t_response = self._t_response, None
        status = response.status()
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {status} {reason}"]
        has_length = False
        for name, value in host.response_headers(response):
            if name.lower() in _CONNECTION_HEADERS:
                continue
            has_length = has_length or name.lower() == "content-length"
            lines.append(f"{name}: {value}")
        if not has_length:
            lines.append("Connection: close")  # the body ends where the host's stream ends
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        stream = io.BufferedReader(_HostBody(head, iter(host.BodyReader(response))))
        result = self.response_class(_HostSocket(stream), self.debuglevel, method=method)
        result.begin()
        return result

    def _authority(self) -> str:
        host_name = self.host if ":" not in self.host else f"[{self.host}]"
        return host_name if self.port == self.default_port else f"{host_name}:{self.port}"


class HTTPSConnection(HTTPConnection):
    """`http.client.HTTPSConnection` through the host (which does TLS)."""

    scheme = "https"
    default_port = http.client.HTTPS_PORT

    def __init__(self, host, port=None, *args, key_file=None, cert_file=None, **kwargs):
        super().__init__(host, port, *args, **kwargs)


def install() -> None:
    """Make `http.client` (and so `urllib.request`) use the host. Call before
    `urllib.request` is imported: it offers https only if `http.client` does."""
    http.client.HTTPConnection = HTTPConnection
    http.client.HTTPSConnection = HTTPSConnection
    # There is no `ssl` module in the sandbox: contexts are the host's business.
    http.client._create_https_context = lambda http_version=None: None
    if "HTTPSConnection" not in http.client.__all__:
        http.client.__all__.append("HTTPSConnection")
