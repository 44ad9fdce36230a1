"""`js`: the JavaScript globals legacy Python Workers import (`from js import Response`).

They keep JavaScript's call shapes: constructors are called plainly or with
`.new(...)` (`TextEncoder.new()`), names are camelCase. A global Taipan does
not provide raises ImportError naming it.
"""

import json as _json
import math as _math
import sys as _sys
import time as _time
from collections.abc import Mapping as _Mapping
from opcode import opmap as _opmap
from datetime import UTC as _UTC
from datetime import datetime as _datetime
from datetime import timedelta as _timedelta
from urllib.parse import parse_qsl as _parse_qsl
from urllib.parse import quote_plus as _quote_plus
from urllib.parse import urlsplit as _urlsplit

from _taipan.webapi import (
    AbortController,
    AbortSignal,
    ArrayBuffer,
    DOMException,
    TextDecoder,
    TextEncoder,
    Uint8Array,
    atob,
    btoa,
    clearInterval,
    clearTimeout,
    setInterval,
    setTimeout,
)
from _taipan.webapi import JsClass as _JsClass
from _taipan.webapi import js_error as _js_error
from _taipan.webcrypto import CryptoKey, crypto
from pyodide.ffi import JsArray, JsException, JsObject, JsProxy, to_js
from workers import Blob, File, FormData, Headers, Request, Response, fetch
from workers._websocket import WebSocket, WebSocketPair, WebSocketRequestResponsePair
from workers._cache import caches

Error = JsException

__all__ = [
    "AbortController",
    "AbortSignal",
    "Array",
    "ArrayBuffer",
    "Blob",
    "CryptoKey",
    "DOMException",
    "Date",
    "Error",
    "File",
    "FormData",
    "Headers",
    "JSON",
    "Object",
    "Request",
    "Response",
    "TextDecoder",
    "TextEncoder",
    "URL",
    "URLSearchParams",
    "Uint8Array",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "atob",
    "btoa",
    "caches",
    "clearInterval",
    "clearTimeout",
    "console",
    "crypto",
    "fetch",
    "setInterval",
    "setTimeout",
]


class JSON:
    @staticmethod
    def stringify(value, replacer=None, space=None) -> str:
        indent = space if isinstance(space, int) and space > 0 else (space or None)
        separators = None if indent else (",", ":")
        return _json.dumps(_plain(value), indent=indent, separators=separators, ensure_ascii=False)

    @staticmethod
    def parse(text):
        return to_js(_json.loads(text))


_EPOCH = _datetime(1970, 1, 1, tzinfo=_UTC)
_MS = _timedelta(milliseconds=1)


class Date(_JsClass):
    """`new Date()`, `new Date(ms)` or `new Date("2024-05-01T12:00:00Z")`: an
    instant in milliseconds since the epoch, in UTC (the sandbox's time zone).
    An unparsable string makes an invalid date, whose `getTime()` is NaN."""

    def __init__(self, value=None):
        if value is None:
            self._ms = Date.now()
        elif isinstance(value, Date):
            self._ms = value._ms
        elif isinstance(value, str):
            self._ms = Date.parse(value)
        else:
            self._ms = int(value) if _math.isfinite(value) else _math.nan

    @staticmethod
    def now() -> int:
        """Milliseconds since the epoch, as `Date.now()` (what `setAlarm` takes)."""
        return _time.time_ns() // 1_000_000

    @staticmethod
    def parse(text: str):
        """Milliseconds since the epoch of an ISO 8601 date (UTC unless it has an offset), or NaN."""
        try:
            moment = _datetime.fromisoformat(text.strip())
        except ValueError:
            return _math.nan
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_UTC)
        return (moment - _EPOCH) // _MS

    def getTime(self):
        return self._ms

    valueOf = getTime

    def toISOString(self) -> str:
        if _math.isnan(self._ms):
            raise _js_error("RangeError", "Invalid time value")
        moment = _EPOCH + self._ms * _MS
        return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"

    def toJSON(self):
        return None if _math.isnan(self._ms) else self.toISOString()

    def __repr__(self) -> str:
        return f"Date({self.toJSON() or 'Invalid Date'})"


class Object:
    @staticmethod
    def fromEntries(entries):
        return JsObject(_plain(entries) if isinstance(entries, JsProxy) else entries)

    @staticmethod
    def keys(obj):
        return JsArray(_plain(obj).keys())

    @staticmethod
    def values(obj):
        return JsArray(_plain(obj).values())

    @staticmethod
    def entries(obj):
        return JsArray(JsArray(kv) for kv in _plain(obj).items())

    @staticmethod
    def new():
        return JsObject()


class Array:
    """`Array.from_` (`Array.from`), `Array.of`, `Array.isArray` and `Array.new`: arrays are `JsArray` lists."""

    @staticmethod
    def new(*items):
        # As in JavaScript, new Array(3) has three empty slots but new Array(a, b) is [a, b].
        if len(items) == 1 and isinstance(items[0], int) and not isinstance(items[0], bool):
            return JsArray([None] * items[0])
        return JsArray(items)

    @staticmethod
    def of(*items):
        return JsArray(items)

    @staticmethod
    def from_(items, map_fn=None):
        return JsArray(items if map_fn is None else map(map_fn, items))

    @staticmethod
    def isArray(value) -> bool:
        return isinstance(value, (list, tuple))


setattr(Array, "from", Array.__dict__["from_"])


class _Console:
    """`console.log` and friends: one line to the worker's log, tagged by the host."""

    @staticmethod
    def _emit(stream, args):
        stream.write(" ".join(_format(a) for a in args) + "\n")
        stream.flush()

    def log(self, *args):
        self._emit(_sys.stdout, args)

    info = debug = log

    def warn(self, *args):
        self._emit(_sys.stderr, args)

    error = warn


console = _Console()


class URLSearchParams(_JsClass):
    """`new URLSearchParams(init)`: ordered name/value pairs from a query
    string ("?a=1&b=2"), a dict or JS object, pairs, or another
    URLSearchParams. Iterating yields (name, value) pairs."""

    def __init__(self, init=""):
        if isinstance(init, URLSearchParams):
            pairs = init._pairs
        elif isinstance(init, str):
            pairs = _parse_qsl(init.removeprefix("?"), keep_blank_values=True)
        elif isinstance(init, _Mapping):
            pairs = init.items()
        else:
            pairs = init
        self._pairs = [(str(name), str(value)) for name, value in pairs]

    @property
    def size(self) -> int:
        return len(self._pairs)

    def append(self, name, value) -> None:
        self._pairs.append((str(name), str(value)))

    def set(self, name, value) -> None:
        """Give the first `name` pair `value` and drop the others (or append one)."""
        name = str(name)
        # No pair before the first match is removed, so its index stays valid.
        index = next((i for i, (k, _) in enumerate(self._pairs) if k == name), len(self._pairs))
        self._pairs = [(k, v) for k, v in self._pairs if k != name]
        self._pairs.insert(index, (name, str(value)))

    def delete(self, name, value=None) -> None:
        self._pairs = [(k, v) for k, v in self._pairs if k != name or (value is not None and v != str(value))]

    def get(self, name):
        return next((v for k, v in self._pairs if k == name), None)

    def getAll(self, name):
        return [v for k, v in self._pairs if k == name]

    def has(self, name, value=None):
        return any(k == name and (value is None or v == str(value)) for k, v in self._pairs)

    def keys(self):
        return (k for k, _ in self._pairs)

    def values(self):
        return (v for _, v in self._pairs)

    def entries(self):
        return iter(list(self._pairs))

    __iter__ = entries

    def sort(self) -> None:
        self._pairs.sort(key=lambda pair: pair[0])

    def toString(self) -> str:
        return "&".join(f"{_form_encode(k)}={_form_encode(v)}" for k, v in self._pairs)

    __str__ = toString

    def __repr__(self) -> str:
        return f"URLSearchParams({self._pairs!r})"


def _form_encode(text: str) -> str:
    # The urlencoded serializer of the URL standard: "*" stays, "~" does not.
    return _quote_plus(text, safe="*").replace("~", "%7E")


class URL:
    def __init__(self, url: str, base: str | None = None):
        if base is not None:
            from urllib.parse import urljoin

            url = urljoin(str(base), str(url))
        parts = _urlsplit(str(url))
        if not parts.scheme:
            raise TypeError(f"Invalid URL: {url!r}")
        self.href = str(url)
        self.protocol = parts.scheme + ":"
        self.host = parts.netloc.rpartition("@")[2]
        self.hostname = parts.hostname or ""
        self.port = str(parts.port) if parts.port else ""
        self.pathname = parts.path or "/"
        self.search = "?" + parts.query if parts.query else ""
        self.hash = "#" + parts.fragment if parts.fragment else ""
        self.origin = f"{parts.scheme}://{self.host}"
        self.username = parts.username or ""
        self.password = parts.password or ""
        self.searchParams = URLSearchParams(parts.query)

    @classmethod
    def new(cls, url, base=None):
        return cls(url, base)

    def toString(self):
        return self.href

    def __str__(self):
        return self.href


def _plain(value):
    """A JSON-ready Python value from a "JS" value."""
    if isinstance(value, Date):
        return value.toJSON()
    if isinstance(value, JsProxy):
        value = value.to_py()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _format(value) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple, JsProxy)):
        try:
            return _json.dumps(_plain(value), ensure_ascii=False)
        except (TypeError, ValueError):
            pass
    return str(value)


_IMPORT_FROM = _opmap["IMPORT_FROM"]


def __getattr__(name: str):
    """`from js import X` for a global Taipan lacks: an ImportError saying so.

    CPython turns an AttributeError raised here during `from js import X` into
    a bare "cannot import name 'X'", losing the explanation, so for that
    statement (the caller is at an IMPORT_FROM instruction) this raises the
    ImportError itself. Everything else (`hasattr(js, X)`, `getattr(js, X,
    None)`) gets the AttributeError attribute lookups expect."""
    caller = _sys._getframe(1)
    if not name.startswith("_") and caller.f_code.co_code[caller.f_lasti] == _IMPORT_FROM:
        raise ImportError(
            f"js.{name} is not available in Taipan yet: Taipan's `js` module does not provide "
            "this JavaScript global (js.__all__ lists the ones it does)",
            name=__name__,
        )
    raise AttributeError(f"module 'js' has no attribute {name!r}")
