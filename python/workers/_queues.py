"""Queues: `env.QUEUE.send(...)` / `sendBatch(...)` (producer bindings), and
the batch a consumer's `queue` handler receives.

A body is serialized here by its content type (`json`, the default; `text`;
`bytes`; `v8`, kept as JSON since Python has no V8 serializer) and the host
stores it. Message-level `ack()`/`retry()` win over batch-level
`ackAll()`/`retryAll()`, and the first call on each wins, as on Workers.
"""

import base64
import datetime
import json

from _taipan import host
from pyodide.ffi import json_default

from ._args import options as _options
from ._args import plain as _plain

CONTENT_TYPES = ("json", "text", "bytes", "v8")


def _delay(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise TypeError("delaySeconds must be a whole number of seconds, 0 or more")
    return int(value)


def serialize(body, content_type) -> bytes:
    """A message body as the bytes the host stores for `content_type`."""
    content_type = (content_type or "json").lower()
    if content_type not in CONTENT_TYPES:
        raise TypeError(f"Unsupported queue message content type: {content_type}")
    body = _plain(body)
    if content_type == "text":
        if not isinstance(body, str):
            raise TypeError(f'Content Type "text" requires a value of type string, but received: {type(body).__name__}')
        return body.encode()
    if content_type == "bytes":
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f'Content Type "bytes" requires a value of type bytes, but received: {type(body).__name__}')
        return bytes(body)
    return json.dumps(body, default=json_default, separators=(",", ":")).encode()


def deserialize(body: str, content_type: str):
    """What a consumer sees of a stored body."""
    if content_type == "bytes":
        return base64.b64decode(body)
    if content_type == "text":
        return body
    return json.loads(body)


class Queue:
    """`env.QUEUE`: a producer binding."""

    def __init__(self, binding: str):
        self._binding = binding

    async def send(self, body, options=None, **kwargs) -> None:
        options = _options(options, kwargs)
        content_type = (options.get("contentType") or "json").lower()
        data = serialize(body, content_type)
        args = {"contentType": content_type, "delaySeconds": _delay(options.get("delaySeconds"))}
        await host.call(self._binding, "send", args, data)

    async def sendBatch(self, messages, options=None, **kwargs) -> None:
        options = _options(options, kwargs)
        items, bodies = [], []
        for message in _plain(messages) or []:
            message = _options(message, {})
            if "body" not in message:
                raise TypeError("each message of sendBatch() needs a `body`")
            content_type = (message.get("contentType") or "json").lower()
            data = serialize(message["body"], content_type)
            items.append({"contentType": content_type, "delaySeconds": _delay(message.get("delaySeconds")), "size": len(data)})
            bodies.append(data)
        if not items:
            raise TypeError("sendBatch() requires at least one message")
        args = {"messages": items, "delaySeconds": _delay(options.get("delaySeconds"))}
        await host.call(self._binding, "sendBatch", args, b"".join(bodies))

    send_batch = sendBatch

    def __repr__(self) -> str:
        return f"<Queue {self._binding}>"


class Message:
    """One message of a batch."""

    def __init__(self, data: dict):
        self.id = data["id"]
        # Naive UTC, as Cloudflare's Python SDK gives it.
        self.timestamp = datetime.datetime.fromtimestamp(data["timestamp"] / 1000, datetime.UTC).replace(tzinfo=None)
        self.attempts = data["attempts"]
        self.contentType = data["contentType"]
        self.body = deserialize(data["body"], data["contentType"])
        self._outcome = None

    def ack(self) -> None:
        if self._outcome is None:
            self._outcome = ("ack", None)

    def retry(self, options=None, **kwargs) -> None:
        if self._outcome is None:
            self._outcome = ("retry", _delay(_options(options, kwargs).get("delaySeconds")))

    def __repr__(self) -> str:
        return f"<Message {self.id} attempts={self.attempts}>"


class MessageBatch:
    """What a consumer's `queue` handler receives."""

    def __init__(self, data: dict):
        self.queue = data["queue"]
        self.messages = [Message(m) for m in data["messages"]]
        self._outcome = None

    def ackAll(self) -> None:
        if self._outcome is None:
            self._outcome = ("ack", None)

    def retryAll(self, options=None, **kwargs) -> None:
        if self._outcome is None:
            self._outcome = ("retry", _delay(_options(options, kwargs).get("delaySeconds")))

    ack_all = ackAll
    retry_all = retryAll

    def outcomes(self, failed: bool) -> dict:
        """The answer to the host: each message's own call, else the
        batch's, else ack if the handler returned and retry if it raised."""
        acks, retries = [], []
        default = ("retry", None) if failed else ("ack", None)
        for message in self.messages:
            kind, delay = message._outcome or self._outcome or default
            if kind == "ack":
                acks.append(message.id)
            else:
                retries.append({"id": message.id, "delaySeconds": delay})
        return {"acks": acks, "retries": retries}

    def __repr__(self) -> str:
        return f"<MessageBatch {self.queue} of {len(self.messages)}>"
