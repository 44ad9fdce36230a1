"""`js`: the JavaScript globals legacy Python Workers import (`from js import Response`)."""

import json as _json
import sys as _sys
import time as _time
from urllib.parse import parse_qsl as _parse_qsl
from urllib.parse import urlsplit as _urlsplit

from pyodide.ffi import JsArray, JsException, JsObject, JsProxy, to_js
from workers import Headers, Request, Response, fetch  # noqa: F401 - `from js import fetch`

Error = JsException

__all__ = ["JSON", "Date", "Error", "Headers", "Object", "Request", "Response", "URL", "URLSearchParams", "console", "fetch"]


class JSON:
    @staticmethod
    def stringify(value, replacer=None, space=None) -> str:
        indent = space if isinstance(space, int) and space > 0 else (space or None)
        separators = None if indent else (",", ":")
        return _json.dumps(_plain(value), indent=indent, separators=separators, ensure_ascii=False)

    @staticmethod
    def parse(text):
        return to_js(_json.loads(text))


class Date:
    @staticmethod
    def now() -> int:
        """Milliseconds since the epoch, as `Date.now()` (what `setAlarm` takes)."""
        return _time.time_ns() // 1_000_000


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


class URLSearchParams:
    def __init__(self, query: str = ""):
        self._pairs = _parse_qsl(query.lstrip("?"), keep_blank_values=True)

    def get(self, name):
        return next((v for k, v in self._pairs if k == name), None)

    def getAll(self, name):
        return [v for k, v in self._pairs if k == name]

    def has(self, name):
        return any(k == name for k, _ in self._pairs)

    def __iter__(self):
        return iter(self._pairs)

    def toString(self):
        from urllib.parse import urlencode

        return urlencode(self._pairs)


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
