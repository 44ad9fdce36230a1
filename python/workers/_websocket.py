"""WebSockets: `WebSocketPair`, the server end a worker accepts, and the
events the host delivers to it.

The host owns the connection (`crates/taipan-runtime/src/websocket/`). A
worker makes a pair, accepts the server end (`server.accept()`, or in a
Durable Object `ctx.acceptWebSocket(server, tags)`), and returns
`Response(None, status=101, web_socket=client)`. Every client message then
arrives as a separate call into the sandbox that owns the socket: its
listeners run (`addEventListener("message", ...)`), or for a hibernatable
socket the object's `webSocketMessage(ws, message)`; the object may have
been rebuilt from the snapshot since (hibernation), so such sockets are
found again by id. Sends go to the host at once, in order, with no wait.
"""

import base64
import inspect
import json

from _taipan import contract, host
from pyodide.ffi import JsArray, JsBuffer, JsException, JsObject, JsProxy

CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

# Sockets accepted in this sandbox with listeners (`accept()`), and the
# hibernatable ones it has seen, by id.
_live = {}
_hibernatable = {}

# While an event's handlers run, what they send is gathered here and sent
# in one call when they are done (still inside the event's call, so order
# holds); else None and each send is a call of its own.
_batch = None


def _send_frames(frames: list) -> bool:
    """Queue `frames` (one socket's); False if that socket is closed (known
    only when sent at once)."""
    if _batch is not None:
        _batch.extend(frames)
        return True
    result = _call("send", frames=frames)
    if result.get("full"):
        raise JsException("Error: the WebSocket's client is not reading; too many messages are waiting")
    return not result["closed"]


def _flush() -> None:
    global _batch
    frames, _batch = _batch, None
    if frames:
        _call("send", frames=frames)


# Close codes a worker may send (RFC 6455 §7.4.1; 1004-1006 and 1015 are reserved).
def _valid_close_code(code: int) -> bool:
    return code == 1000 or 1001 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _call(op: str, **args):
    return host.call_now(contract.WEBSOCKET_BINDING, op, args)


class _Event(JsObject):
    """An event as listeners get it (`event.data`, `event.code`, ...)."""


class WebSocket(JsProxy):
    """One end of a `WebSocketPair`; the server end once accepted, or a
    socket the host handed over (hibernation, `ctx.getWebSockets()`)."""

    CONNECTING, OPEN, CLOSING, CLOSED = CONNECTING, OPEN, CLOSING, CLOSED

    def __init__(self, _id=None, _server=None):
        self._id = _id
        self._server = _server  # set on a pair's client end
        self._listeners = {}
        self._attachment = None
        self._tags = []
        self.readyState = OPEN if _id is not None else CONNECTING
        self.url = None
        self.protocol = ""
        self.extensions = ""
        self._outbound = False

    @property
    def ready_state(self) -> int:
        return self.readyState

    def _socket_id(self):
        """The id a 101 response carries: the accepted server end's."""
        return self._server._id if self._server is not None else self._id

    # -- accepting --------------------------------------------------------

    def accept(self, options=None) -> None:
        """Accept the server end (or a socket `fetch` opened): its events run
        this socket's listeners, in this sandbox, for the life of the
        connection."""
        if self._outbound:
            if self._id in _live:
                raise TypeError("this WebSocket has already been accepted")
        else:
            self._accept(hibernate=False, tags=[])
        _live[self._id] = self

    def _accept(self, hibernate: bool, tags) -> None:
        if self._server is not None:
            raise TypeError("accept the server end of the WebSocketPair (the second one), not the client end")
        if self._id is not None:
            raise TypeError("this WebSocket has already been accepted")
        self._id = _call("accept", hibernate=hibernate, tags=list(tags or []))["id"]
        self._tags = list(tags or [])
        self.readyState = OPEN

    # -- events -------------------------------------------------------------

    def addEventListener(self, type, listener, options=None) -> None:
        self._listeners.setdefault(str(type), []).append(listener)

    def removeEventListener(self, type, listener, options=None) -> None:
        listeners = self._listeners.get(str(type), [])
        if listener in listeners:
            listeners.remove(listener)

    add_event_listener, remove_event_listener = addEventListener, removeEventListener

    # -- sending ------------------------------------------------------------

    def send(self, message) -> None:
        if self._id is None:
            raise JsException("TypeError: accept() the WebSocket before sending on it")
        if self.readyState != OPEN:
            raise JsException("TypeError: Can't call WebSocket send() after close().")
        if isinstance(message, str):
            frame = {"id": self._id, "text": message}
        elif isinstance(message, (bytes, bytearray, memoryview)):
            frame = {"id": self._id, "binary": base64.b64encode(bytes(message)).decode("ascii")}
        else:
            raise TypeError(f"WebSocket.send() takes str or bytes, not {type(message).__name__}")
        if not _send_frames([frame]):
            self.readyState = CLOSED

    def close(self, code=1000, reason="") -> None:
        code = int(code)
        if not _valid_close_code(code):
            raise JsException(f"TypeError: invalid WebSocket close code {code}")
        if len(str(reason or "").encode()) > 123:
            raise JsException("SyntaxError: a close reason may be at most 123 bytes")
        if self._id is None or self.readyState in (CLOSING, CLOSED):
            return
        _send_frames([{"id": self._id, "close": [int(code), str(reason or "")]}])
        self.readyState = CLOSING

    # -- hibernation state ------------------------------------------------

    def serializeAttachment(self, value) -> None:
        """Keep `value` (JSON-serializable) with the socket across hibernation."""
        value = json.loads(json.dumps(_plain(value)))
        _call("attach", id=self._id, attachment=value)
        self._attachment = value

    def deserializeAttachment(self):
        return self._attachment

    serialize_attachment, deserialize_attachment = serializeAttachment, deserializeAttachment

    def __repr__(self) -> str:
        return f"<WebSocket {self._socket_id() or 'unaccepted'}>"


class WebSocketPair(JsProxy):
    """`client, server = WebSocketPair.new().object_values()` (Pyodide), or
    `client, server = WebSocketPair()`."""

    def __init__(self):
        self._server = WebSocket()
        self._client = WebSocket(_server=self._server)

    @classmethod
    def new(cls) -> "WebSocketPair":
        return cls()

    def object_values(self):
        return JsArray([self._client, self._server])

    def to_py(self, *, depth: int = -1, default_converter=None):
        return {"0": self._client, "1": self._server}

    def __iter__(self):
        return iter((self._client, self._server))

    def __getitem__(self, index):
        return (self._client, self._server)[int(index)]


class WebSocketRequestResponsePair(JsProxy):
    """What `ctx.setWebSocketAutoResponse()` takes: a request text the host
    answers with the response text without waking the object."""

    def __init__(self, request: str, response: str):
        self.request = str(request)
        self.response = str(response)

    @classmethod
    def new(cls, request, response):
        return cls(request, response)


def _plain(value):
    if isinstance(value, JsProxy) and hasattr(value, "to_py"):
        return value.to_py()
    return value


# -- the host's events ----------------------------------------------------------


def hibernatable(socket_id: str, tags=None, attachment=None) -> WebSocket:
    """The object for a hibernatable socket, made again after hibernation."""
    ws = _hibernatable.get(socket_id)
    if ws is None:
        ws = _hibernatable[socket_id] = WebSocket(_id=socket_id)
    if tags is not None:
        ws._tags = list(tags)
    ws._attachment = attachment
    return ws


def accept_hibernatable(ws: WebSocket, tags) -> None:
    ws._accept(hibernate=True, tags=tags)
    _hibernatable[ws._id] = ws


def deliver(event: dict, instance=None, run=None, report=None) -> bool:
    """Run one host event; False if this sandbox has no such socket (the
    host then closes it). `instance` is the Durable Object the socket
    belongs to, if any; `run` drives a coroutine to its end; `report(what,
    exc)` logs a handler's exception (a failing listener does not stop the
    others, nor lose what was sent before it failed)."""
    global _batch
    socket_id = event["id"]
    kind = event["event"]
    ws = _live.get(socket_id)
    if ws is None and (instance is None or not event.get("hibernatable", True)):
        # Accepted with listeners in a sandbox that is gone (a crash, an
        # eviction): nothing here can answer it.
        return False
    _batch = []
    try:
        if ws is not None:
            for result in _run_listeners(ws, kind, _event_for(event), report):
                if inspect.isawaitable(result):
                    _guarded(run, result, report, f"a WebSocket {kind} listener failed")
        else:
            ws = hibernatable(socket_id, event.get("tags"), event.get("attachment"))
            _guarded(run, _call_handler(instance, ws, event), report, f"webSocket {kind} handler failed")
    finally:
        if kind == "close":
            ws.readyState = CLOSED
            _live.pop(socket_id, None)
            _hibernatable.pop(socket_id, None)
        _flush()
    return True


def _guarded(run, result, report, what: str) -> None:
    try:
        if inspect.isawaitable(result):
            run(result)
    except Exception as exc:  # noqa: BLE001 - reported; the other handlers still run
        if report is None:
            raise
        report(what, exc)


def _event_for(event: dict) -> _Event:
    kind = event["event"]
    if kind == "message":
        return _Event({"type": "message", "data": _message_data(event)})
    if kind == "close":
        return _Event({"type": "close", "code": event.get("code", 1005), "reason": event.get("reason", ""), "wasClean": event.get("wasClean", False)})
    return _Event({"type": "error", "error": JsException(event.get("message", "WebSocket error")), "message": event.get("message", "")})


def _message_data(event: dict):
    if "text" in event:
        return event["text"]
    return JsBuffer(base64.b64decode(event.get("binary", "")))


def _run_listeners(ws: WebSocket, kind: str, event: _Event, report) -> list:
    """Call each listener; the awaitables they return, to be run in turn."""
    results = []
    for listener in list(ws._listeners.get(kind, [])):
        handle = getattr(listener, "handleEvent", None)
        try:
            results.append(handle(event) if callable(handle) else listener(event))
        except Exception as exc:  # noqa: BLE001 - reported; the other listeners still run
            if report is None:
                raise
            report(f"a WebSocket {kind} listener failed", exc)
    return results


def _call_handler(instance, ws: WebSocket, event: dict):
    kind = event["event"]
    if kind == "message":
        handler = getattr(instance, "webSocketMessage", None)
        if handler is None:
            raise LookupError(f"{type(instance).__name__} accepted a hibernatable WebSocket but has no webSocketMessage method")
        return handler(ws, _message_data(event))
    if kind == "close":
        handler = getattr(instance, "webSocketClose", None)
        if handler is None:
            return None
        return handler(ws, event.get("code", 1005), event.get("reason", ""), event.get("wasClean", False))
    handler = getattr(instance, "webSocketError", None)
    if handler is None:
        return None
    return handler(ws, JsException(event.get("message", "WebSocket error")))


# -- outbound -------------------------------------------------------------------


async def connect(url: str, headers: list):
    """`fetch(url, headers={"Upgrade": "websocket"})`: the host connects;
    the 101 response's `webSocket` is accepted like a server end, its
    messages arriving as events after the current call."""
    from ._http import Response

    wanted = [(k, v) for k, v in headers if k.lower() not in ("upgrade", "connection")]
    reply = await host.call_header(contract.WEBSOCKET_BINDING, "connect", {"url": url, "headers": wanted})
    ws = WebSocket(_id=reply["id"])
    ws._outbound = True
    ws.url = url
    ws.protocol = reply.get("protocol", "")
    response_headers = [(k, v) for k, v in reply.get("headers", []) if k.lower() not in ("upgrade", "connection")]
    return Response(None, status=101, headers=response_headers, web_socket=ws)


# -- Durable Object state (ctx) ---------------------------------------------------


def get_websockets(tag=None) -> list:
    listed = _call("list", tag=tag)
    return JsArray(hibernatable(s["id"], s["tags"], json.loads(s["attachment"]) if s["attachment"] else None) if s["id"] not in _live else _live[s["id"]] for s in listed)


def set_auto_response(pair=None) -> None:
    if pair is None:
        _call("auto")
    else:
        _call("auto", request=pair.request, response=pair.response)
