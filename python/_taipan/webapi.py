"""The Web platform globals `js` provides besides the Fetch API: typed
arrays, text encoding, base64, timers and abort signals.

Each keeps the JavaScript call shapes Pyodide code uses (`TextEncoder.new()`,
`setTimeout(fn, ms)`, camelCase names) over Python values: `Uint8Array` and
`ArrayBuffer` are `bytearray`s, timers are `call_later` handles on the
running asyncio loop, and JavaScript errors are `JsException`s whose message
starts with the JavaScript error's name ("TypeError: ..."), as in Pyodide.
"""

import asyncio
import base64
import codecs
import inspect
import itertools
import re

from pyodide.ffi import BufferMethods, JsException, JsObject, JsProxy


class JsClass:
    """Mixin for classes JavaScript code constructs: `Foo.new(...)` is `new Foo(...)`."""

    @classmethod
    def new(cls, *args, **kwargs):
        return cls(*args, **kwargs)


def js_error(name: str, message: str) -> JsException:
    """A JavaScript `name` error ("TypeError", "RangeError") as Pyodide raises it."""
    error = JsException(f"{name}: {message}")
    error.name, error.message = name, message
    return error


class DOMException(JsClass, JsException):
    """`new DOMException(message, name)`: a Web API error such as "InvalidCharacterError"."""

    def __init__(self, message: str = "", name: str = "Error"):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


def to_dict(value) -> dict:
    """A JavaScript options bag (None, a dict or a `to_js` object) as a dict."""
    return {} if value is None else dict(value)


def view(data) -> memoryview:
    """The bytes of a JavaScript BufferSource: bytes, bytearray, memoryview,
    `Uint8Array` or `ArrayBuffer` (JavaScript refuses strings, and so does this)."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        hint = " (encode text first, e.g. TextEncoder.new().encode(text))" if isinstance(data, str) else ""
        raise js_error("TypeError", f"expected an ArrayBuffer or a typed array, got {type(data).__name__}{hint}") from None


# -- typed arrays --------------------------------------------------------------


class _Bytes(JsClass, BufferMethods, JsProxy, bytearray):
    """A JavaScript buffer as a `bytearray`: `bytes(x)`, `len(x)`, indexing and
    every API that takes a buffer work on it as they are, and so do Pyodide's
    `to_bytes()`, `to_py()` and `to_memoryview()`."""

    def slice(self, start: int = 0, end: int | None = None):
        return type(self)(self[start:end])


class ArrayBuffer(_Bytes):
    """`new ArrayBuffer(length)`: zeroed bytes (what `crypto.subtle` returns)."""


class Uint8Array(_Bytes):
    """`new Uint8Array(length | array | buffer[, byteOffset[, length]])`.

    Made from a buffer it holds a copy of those bytes: a JavaScript view would
    share the buffer's memory, which a `bytearray` cannot.
    """

    def __init__(self, source=0, byteOffset: int = 0, length: int | None = None):
        if byteOffset or length is not None:
            end = None if length is None else byteOffset + length
            source = view(source)[byteOffset:end]
        super().__init__(source)

    @property
    def length(self) -> int:
        return len(self)

    @property
    def buffer(self) -> ArrayBuffer:
        """A copy of the bytes as an `ArrayBuffer` (writes to it do not show here)."""
        return ArrayBuffer(self)

    @classmethod
    def from_(cls, items, map_fn=None):
        """`Uint8Array.from(items, mapFn)` (`from` is a Python keyword)."""
        return cls(items if map_fn is None else map(map_fn, items))

    def set(self, items, offset: int = 0) -> None:
        """Copy `items` in from `offset`; unlike a slice assignment it never grows the array."""
        items = bytes(items)
        if offset < 0 or offset + len(items) > len(self):
            raise js_error("RangeError", "offset is out of bounds")
        self[offset : offset + len(items)] = items


setattr(Uint8Array, "from", Uint8Array.__dict__["from_"])


# -- text encoding and base64 ----------------------------------------------------


class TextEncoder(JsClass):
    """`new TextEncoder()`: text to UTF-8 bytes, `encode(text)` -> `Uint8Array`."""

    encoding = "utf-8"

    def encode(self, text="") -> Uint8Array:
        text = "" if text is None else str(text)
        try:
            return Uint8Array(text.encode("utf-8"))
        except UnicodeEncodeError:
            # Lone surrogates: JavaScript encodes each as U+FFFD (a
            # high-low pair in a Python str becomes its one character).
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
            return Uint8Array(text.encode("utf-8"))


_UTF8_LABELS = {"utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"}


class TextDecoder(JsClass):
    """`new TextDecoder(label = "utf-8", {fatal, ignoreBOM})`: UTF-8 bytes to text.

    `decode(data)` replaces invalid bytes with U+FFFD, or with `fatal` raises
    a TypeError JsException; `decode(data, {"stream": True})` keeps a
    character split across chunks for the next call. A leading byte order
    mark is dropped unless `ignoreBOM`. Only UTF-8 is supported.
    """

    encoding = "utf-8"

    def __init__(self, label: str = "utf-8", options=None, *, fatal: bool = False, ignoreBOM: bool = False):
        if str(label).strip().lower() not in _UTF8_LABELS:
            raise js_error("RangeError", f'the encoding "{label}" is not supported: Taipan\'s TextDecoder decodes UTF-8 only')
        opts = to_dict(options)
        self.fatal = bool(opts.get("fatal", fatal))
        self.ignoreBOM = bool(opts.get("ignoreBOM", ignoreBOM))
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict" if self.fatal else "replace")
        self._at_start = True

    def decode(self, data=None, options=None) -> str:
        stream = bool(to_dict(options).get("stream", False))
        try:
            text = self._decoder.decode(b"" if data is None else view(data), final=not stream)
        except UnicodeDecodeError as exc:
            self._reset()
            raise js_error("TypeError", "the encoded data was not valid UTF-8") from exc
        if self._at_start and text:
            self._at_start = False
            if not self.ignoreBOM and text.startswith("\ufeff"):
                text = text[1:]
        if not stream:
            self._reset()
        return text

    def _reset(self) -> None:
        self._decoder.reset()
        self._at_start = True


_ASCII_WHITESPACE = str.maketrans("", "", "\t\n\f\r ")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*")


def btoa(data) -> str:
    """Base64 of a "binary string" (one character per byte, U+0000 to U+00FF), as JavaScript's `btoa`."""
    try:
        raw = _binary_string(data).encode("latin-1")
    except UnicodeEncodeError:
        raise DOMException("btoa: the string has characters outside of the Latin-1 range", "InvalidCharacterError") from None
    return base64.b64encode(raw).decode("ascii")


def atob(data) -> str:
    """Base64 to a "binary string", as JavaScript's `atob`: ASCII whitespace
    is skipped, padding is optional, anything else invalid raises
    InvalidCharacterError. `.encode("latin-1")` turns the result into bytes."""
    text = _binary_string(data).translate(_ASCII_WHITESPACE)
    if len(text) % 4 == 0 and text.endswith("="):
        text = text[:-2] if text.endswith("==") else text[:-1]
    if len(text) % 4 == 1 or not _BASE64.fullmatch(text):
        raise DOMException("atob: the string to be decoded is not correctly encoded", "InvalidCharacterError")
    return base64.b64decode(text + "=" * (-len(text) % 4)).decode("latin-1")


def _binary_string(value) -> str:
    # JavaScript converts the argument with String(); bytes are taken as the
    # binary string they stand for, which is what Python callers mean.
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


# -- timers --------------------------------------------------------------------

_timers = {}  # timer id -> the loop handle of its next run
_timer_ids = itertools.count(1)
_tasks = set()  # async callbacks in flight, kept alive until they finish


def setTimeout(callback, ms=0, *args) -> int:
    """Call `callback(*args)` once, `ms` milliseconds from now, on the running
    event loop. Returns the id `clearTimeout` takes. An async callback runs as
    a task."""
    loop = _timer_loop("setTimeout", callback)
    timer_id = next(_timer_ids)

    def run():
        _timers.pop(timer_id, None)
        _call(callback, args)

    _timers[timer_id] = loop.call_later(_seconds(ms), run)
    return timer_id


def setInterval(callback, ms=0, *args) -> int:
    """Call `callback(*args)` every `ms` milliseconds until `clearInterval(id)`."""
    loop = _timer_loop("setInterval", callback)
    timer_id = next(_timer_ids)
    # At least 1 ms: the sandbox's loop polls for I/O only when no timer is
    # due, so a 0 ms interval would starve every host call in flight.
    delay = max(_seconds(ms), 0.001)

    def run():
        # Scheduled before the call, so the callback can clear its own interval.
        _timers[timer_id] = loop.call_later(delay, run)
        _call(callback, args)

    _timers[timer_id] = loop.call_later(delay, run)
    return timer_id


def clearTimeout(timer_id=None) -> None:
    """Cancel a `setTimeout` or `setInterval` timer; an unknown id is ignored, as in JavaScript."""
    handle = _timers.pop(timer_id, None)
    if handle is not None:
        handle.cancel()


clearInterval = clearTimeout


def cancel_timers() -> None:
    """End every pending timer: the request that set them is over (Workers
    cancels a request's timers with it), so none fires in a later request."""
    for handle in _timers.values():
        handle.cancel()
    _timers.clear()


def _timer_loop(what: str, callback) -> asyncio.AbstractEventLoop:
    # Checked now: a bad callback found when the timer fires would fail far from its cause.
    if not callable(callback):
        raise js_error("TypeError", f"{what}: the callback must be callable, got {type(callback).__name__}")
    return _running_loop(what)


def _running_loop(what: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{what} needs a running event loop: call it from async code (an async handler or a coroutine it awaits)"
        ) from None


def _seconds(ms) -> float:
    # JavaScript takes any number and treats a missing, negative or NaN delay as 0.
    try:
        ms = float(ms or 0)
    except (TypeError, ValueError):
        return 0.0
    return ms / 1000 if ms > 0 else 0.0


def _call(callback, args) -> None:
    result = callback(*args)
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


# -- abort signals ---------------------------------------------------------------


class AbortSignal:
    """Whether an operation was aborted and why: `aborted`, `reason`,
    `addEventListener("abort", listener)` (or `onabort`) and `throwIfAborted()`."""

    def __init__(self):
        self.aborted = False
        self.reason = None
        self.onabort = None
        self._listeners = []

    def addEventListener(self, event_type: str, listener, options=None) -> None:
        if event_type == "abort" and listener not in self._listeners:
            self._listeners.append(listener)

    def removeEventListener(self, event_type: str, listener, options=None) -> None:
        if event_type == "abort" and listener in self._listeners:
            self._listeners.remove(listener)

    def throwIfAborted(self) -> None:
        if self.aborted:
            raise self.reason if isinstance(self.reason, BaseException) else JsException(self.reason)

    def _abort(self, reason=None) -> None:
        if self.aborted:
            return
        self.aborted = True
        self.reason = DOMException("This operation was aborted", "AbortError") if reason is None else reason
        event = JsObject({"type": "abort", "target": self})
        for listener in [*self._listeners, self.onabort]:
            if listener is not None:
                listener(event)

    @staticmethod
    def abort(reason=None) -> "AbortSignal":
        """A signal aborted already."""
        signal = AbortSignal()
        signal._abort(reason)
        return signal

    @staticmethod
    def timeout(ms) -> "AbortSignal":
        """A signal that aborts with a TimeoutError `ms` milliseconds from now (needs a running loop)."""
        signal = AbortSignal()
        reason = DOMException("The operation was aborted due to timeout", "TimeoutError")
        _running_loop("AbortSignal.timeout").call_later(_seconds(ms), signal._abort, reason)
        return signal


class AbortController(JsClass):
    """`new AbortController()`: `controller.abort(reason)` aborts `controller.signal`."""

    def __init__(self):
        self.signal = AbortSignal()

    def abort(self, reason=None) -> None:
        self.signal._abort(reason)
