"""`Headers`: an ordered, case-insensitive multimap with the Fetch API's surface."""

from collections.abc import Iterable, Mapping


class Headers:
    """HTTP headers as Workers code sees them.

    Names are compared case-insensitively and stored lowercased (as the Fetch
    spec does); repeated headers keep every value, in order. `get` joins
    repeats with ", " like JavaScript; `get_all` returns them separately.
    Iterating yields `(name, value)` pairs, like `headers.entries()` in JS.
    """

    __slots__ = ("_items",)

    def __init__(self, init=None):
        self._items: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._items = list(init._items)
            return
        init = _unwrap(init)
        pairs = init.items() if isinstance(init, Mapping) else init
        if not isinstance(pairs, Iterable) or isinstance(pairs, (str, bytes)):
            raise TypeError(f"Headers: expected a dict or a list of pairs, got {type(init).__name__}")
        for pair in pairs:
            try:
                name, value = pair
            except (TypeError, ValueError):
                raise TypeError(f"Headers: expected a (name, value) pair, got {pair!r}") from None
            self.append(name, value)

    @staticmethod
    def new(init=None):
        return Headers(init)

    def append(self, name: str, value) -> None:
        self._items.append((_name(name), _value(value)))

    def set(self, name: str, value) -> None:
        name = _name(name)
        self._items = [(k, v) for k, v in self._items if k != name]
        self._items.append((name, _value(value)))

    def delete(self, name: str) -> None:
        name = _name(name)
        self._items = [(k, v) for k, v in self._items if k != name]

    def get(self, name: str, default=None):
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        name = _name(name)
        return [v for k, v in self._items if k == name]

    getAll = get_all

    def getSetCookie(self) -> list[str]:
        return self.get_all("set-cookie")

    def has(self, name: str) -> bool:
        name = _name(name)
        return any(k == name for k, _ in self._items)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and self.has(name)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.delete(name)

    def __iter__(self):
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def items(self):
        return list(self._items)

    entries = items

    def keys(self):
        seen = []
        for k, _ in self._items:
            if k not in seen:
                seen.append(k)
        return seen

    def values(self):
        return [self.get(k) for k in self.keys()]

    def to_py(self) -> dict:
        return {k: self.get(k) for k in self.keys()}

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


# Names already checked, lowercased: a worker uses a handful, on every
# request (the check was ~5% of a warm hello request). Bounded.
_CHECKED_NAMES = {}
_CHECKED_NAMES_MAX = 512
_CHECKED_NAME_LEN = 64


def _name(name) -> str:
    if type(name) is str:
        lowered = _CHECKED_NAMES.get(name)
        if lowered is not None:
            return lowered
    if not isinstance(name, str):
        raise TypeError(f"header name must be a str, got {type(name).__name__}")
    if not name or any(c in name for c in " \t\r\n:"):
        raise ValueError(f"invalid header name {name!r}")
    lowered = name.lower()
    # Request headers come from clients: only names of a usual length are
    # kept, so junk cannot fill the cache with large keys.
    if type(name) is str and len(name) <= _CHECKED_NAME_LEN and len(_CHECKED_NAMES) < _CHECKED_NAMES_MAX:
        _CHECKED_NAMES[name] = lowered
    return lowered


def _value(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    elif not isinstance(value, str):
        value = str(value)
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"invalid header value {value!r}")
    return value.strip(" \t")


def _unwrap(value):
    """Accept `pyodide.ffi.to_js` results and other proxies wherever a dict is."""
    to_py = getattr(value, "to_py", None)
    return to_py() if callable(to_py) and not isinstance(value, Mapping) else value
