"""`pyodide.ffi`: the foreign function interface Workers code relies on.

Taipan runs CPython, not Pyodide, so there is no JavaScript heap: "JS objects"
are Python objects with JavaScript-like behaviour. `to_js` produces such an
object, `JsProxy` is their common base class, and `create_proxy` is the
identity wrapper with `destroy()`.
"""

from collections.abc import Mapping


class JsProxy:
    """Base class of values that stand for JavaScript objects."""

    def to_py(self, *, depth: int = -1, default_converter=None):
        return self


class JsException(Exception):
    """An error raised by a "JavaScript" API (a binding or the runtime)."""


class JsObject(JsProxy, Mapping):
    """A JavaScript object made from a dict: keys read as attributes or items."""

    __slots__ = ("_data",)

    def __init__(self, data=None):
        object.__setattr__(self, "_data", dict(data or {}))

    def __getattribute__(self, name):
        # A property of the object wins over Mapping's methods, as in JS:
        # a KV list result's `.keys` is its list of keys.
        if not name.startswith("_"):
            data = object.__getattribute__(self, "_data")
            if name in data:
                return data[name]
        return object.__getattribute__(self, name)

    def __getattr__(self, name):
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self._data[name] = value

    def __getitem__(self, key):
        return self._data[key]

    def __setitem__(self, key, value):
        self._data[key] = value

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def as_object_map(self):
        return self

    def object_entries(self):
        return list(self._data.items())

    def to_py(self, *, depth: int = -1, default_converter=None):
        return {k: _to_py(v, depth - 1) if depth != 0 else v for k, v in self._data.items()}

    def __repr__(self):
        return f"[object Object] {self._data!r}"


class JsArray(JsProxy, list):
    """A JavaScript array made from a list."""

    def to_py(self, *, depth: int = -1, default_converter=None):
        return [_to_py(v, depth - 1) if depth != 0 else v for v in self]


class BufferMethods:
    """Pyodide's methods of a JavaScript buffer proxy, for Python classes
    holding bytes (`JsBuffer` here, `js.Uint8Array` and `js.ArrayBuffer`)."""

    @property
    def byteLength(self) -> int:
        return len(self)

    def to_bytes(self) -> bytes:
        return bytes(self)

    def to_memoryview(self) -> memoryview:
        """A memoryview of a copy, as in Pyodide."""
        return memoryview(bytes(self))

    def to_py(self, *, depth: int = -1, default_converter=None) -> memoryview:
        return self.to_memoryview()

    def to_string(self, encoding: str | None = None) -> str:
        return bytes(self).decode(encoding or "utf-8")


class JsBuffer(BufferMethods, JsProxy, bytes):
    """Binary data as JavaScript holds it (an ArrayBuffer or a Uint8Array):
    what `arrayBuffer()` returns and `to_js(bytes)` makes. It is `bytes`, so
    Python code uses it as is; ported code calls Pyodide's methods on it."""

    @property
    def length(self) -> int:
        return len(self)

    @property
    def buffer(self) -> "JsBuffer":
        """`u8.buffer`: the same bytes, as an ArrayBuffer (a Response body)."""
        return self


def to_js(obj, *, depth: int = -1, dict_converter=None, create_pyproxies: bool = True, default_converter=None, **_ignored):
    """Convert a Python value to its "JavaScript" counterpart.

    dicts become objects (or whatever `dict_converter` makes of their items,
    e.g. `Object.fromEntries`), lists and tuples become arrays, and scalars
    stay as they are.
    """
    if depth == 0:
        return obj
    if isinstance(obj, JsProxy):
        return obj
    if isinstance(obj, Mapping):
        items = [(k, to_js(v, depth=depth - 1, dict_converter=dict_converter)) for k, v in obj.items()]
        return dict_converter(items) if dict_converter is not None else JsObject(items)
    if isinstance(obj, (list, tuple)):
        return JsArray(to_js(v, depth=depth - 1, dict_converter=dict_converter) for v in obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return JsBuffer(obj)  # a copy, as Pyodide's Uint8Array is
    if default_converter is not None and not isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return default_converter(obj, lambda v: to_js(v, depth=depth - 1), lambda k, v: None)
    return obj


class _Proxy(JsProxy):
    """What `create_proxy` returns: calls go through until `destroy()`."""

    def __init__(self, obj):
        self._obj = obj
        self._destroyed = False

    def __call__(self, *args, **kwargs):
        if self._destroyed:
            raise JsException("this proxy has been destroyed")
        return self._obj(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._obj, name)

    def destroy(self):
        self._destroyed = True

    def to_py(self, **_):
        return self._obj


def create_proxy(obj, *, capture_this: bool = False, roundtrip: bool = True):
    return _Proxy(obj)


def create_once_callable(obj):
    return _Proxy(obj)


def destroy_proxies(proxies):
    for proxy in proxies:
        proxy.destroy()


def run_sync(awaitable):
    """Run `awaitable` (a binding call, a fetch) to completion synchronously."""
    from _taipan.host import run_sync as _run_sync

    return _run_sync(awaitable)


def json_default(value):
    """`json.dumps(..., default=json_default)`: "JavaScript" values (a D1 row,
    a `to_js` result) as their Python data, wherever Python data goes to JSON."""
    if isinstance(value, JsProxy):
        return value.to_py()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _to_py(value, depth):
    return value.to_py(depth=depth) if isinstance(value, JsProxy) else value


__all__ = [
    "JsArray",
    "JsBuffer",
    "JsException",
    "JsObject",
    "JsProxy",
    "create_once_callable",
    "create_proxy",
    "destroy_proxies",
    "run_sync",
    "to_js",
]
