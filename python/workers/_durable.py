"""Durable Objects: the `DurableObject` base class, `env.NS` (the namespace),
ids, stubs, and `ctx.storage`.

A stub's RPC call (`await stub.add_message(x)`) and `stub.fetch(request)`
are host calls to the binding; the host runs them in the object's own
sandbox (one live instance per id, one call at a time), where
`_taipan.dispatch` keeps the instance between calls. Arguments, results and
stored values travel in a JSON encoding that keeps their Python types, so a
`pyodide.ffi.to_js` object arrives as the same kind of object.
"""

import datetime
import hashlib
import inspect
import json
import os

from _taipan import contract, host
from pyodide.ffi import JsException, JsObject

from ._rpc import decode, dumps, encode, method  # noqa: F401 - encode/decode are this module's API too

STORAGE = contract.STORAGE_BINDING


# -- ids, namespaces and stubs ------------------------------------------------


class DurableObjectId:
    """An object's id: 64 hex digits; `name` when made by `idFromName`."""

    def __init__(self, hex_id: str, name=None):
        self._hex = hex_id
        self.name = name

    def toString(self) -> str:
        return self._hex

    def equals(self, other) -> bool:
        return isinstance(other, DurableObjectId) and other._hex == self._hex

    def __str__(self) -> str:
        return self._hex

    def __eq__(self, other) -> bool:
        return self.equals(other)

    def __hash__(self) -> int:
        return hash(self._hex)

    def __repr__(self) -> str:
        return f"DurableObjectId({self._hex!r})"


class DurableObjectNamespace:
    """`env.MY_OBJECTS`: makes ids and stubs for one Durable Object class."""

    def __init__(self, binding: str):
        self._binding = binding

    def idFromName(self, name) -> DurableObjectId:
        if not isinstance(name, str):
            raise TypeError(f"idFromName() needs a str, got {type(name).__name__}")
        digest = hashlib.sha256(f"{self._binding}\0{name}".encode()).hexdigest()
        return DurableObjectId(digest, name)

    def newUniqueId(self, options=None) -> DurableObjectId:
        return DurableObjectId(os.urandom(32).hex())

    def idFromString(self, value) -> DurableObjectId:
        text = str(value)
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise TypeError("Invalid Durable Object ID: must be 64 hex digits")
        return DurableObjectId(text)

    def get(self, object_id, options=None) -> "DurableObjectStub":
        if not isinstance(object_id, DurableObjectId):
            raise TypeError(f"get() needs a DurableObjectId, got {type(object_id).__name__}")
        return DurableObjectStub(self._binding, object_id)

    def getByName(self, name, options=None) -> "DurableObjectStub":
        return self.get(self.idFromName(name))

    # Python-style aliases.
    id_from_name, new_unique_id, id_from_string, get_by_name = idFromName, newUniqueId, idFromString, getByName


# The id of the object this sandbox hosts (an object lives in a sandbox of
# its own), so a call to its own stub is refused instead of waiting forever
# for the call it is part of to end.
_home_id = None


def set_home(object_id: str) -> None:
    global _home_id
    _home_id = object_id


def _not_home(stub: "DurableObjectStub") -> None:
    if _home_id is not None and str(stub.id) == _home_id:
        raise JsException(
            "Error: a Durable Object cannot call itself through its own stub: calls to one object run "
            "one at a time, so it would wait for itself; call the method directly (self.method(...))"
        )


class DurableObjectStub:
    """A client for one object: `await stub.method(args)` (RPC) and `await stub.fetch(request)`."""

    def __init__(self, binding: str, object_id: DurableObjectId):
        self._binding = binding
        self.id = object_id
        self.name = object_id.name

    async def fetch(self, input, init=None, **kwargs):
        from ._fetch import fetch_via

        _not_home(self)
        return await fetch_via(self._binding, input, init, kwargs, [(contract.HEADER_DO_ID, str(self.id).encode("ascii"))])

    def __getattr__(self, name: str):
        headers = [(contract.HEADER_DO_ID, str(self.id).encode("ascii"))]
        return method(self._binding, name, headers, check=lambda: _not_home(self))

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._binding} {self.id}>"


# -- inside the object --------------------------------------------------------


class DurableObject:
    """Base class of a Durable Object: `class Counter(DurableObject)`, with
    `self.ctx` (its state: `id`, `storage`) and `self.env`."""

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env


class DurableObjectState:
    """`self.ctx` of a Durable Object."""

    def __init__(self, class_name: str, object_id: str):
        self.id = DurableObjectId(object_id)
        self.storage = DurableObjectStorage(class_name, object_id)
        self._request_ctx = None  # the ExecutionContext of the call running now

    async def blockConcurrencyWhile(self, callback):
        # Calls into an object already run one at a time.
        result = callback()
        return await result if inspect.isawaitable(result) else result

    def waitUntil(self, awaitable) -> None:
        if self._request_ctx is None:
            raise RuntimeError("waitUntil() is only available while the object handles a call")
        self._request_ctx.waitUntil(awaitable)

    block_concurrency_while, wait_until = blockConcurrencyWhile, waitUntil

    # -- WebSockets (hibernatable: the object may leave memory between events) --

    def acceptWebSocket(self, ws, tags=None) -> None:
        """Accept `ws` (a pair's server end) for this object: its events call
        `webSocketMessage` / `webSocketClose` / `webSocketError`."""
        from . import _websocket

        _websocket.accept_hibernatable(ws, list(tags or []))

    def getWebSockets(self, tag=None):
        from . import _websocket

        return _websocket.get_websockets(tag)

    def getTags(self, ws) -> list:
        return list(ws._tags)

    def setWebSocketAutoResponse(self, pair=None) -> None:
        from . import _websocket

        _websocket.set_auto_response(pair)

    accept_websocket, get_websockets, get_tags = acceptWebSocket, getWebSockets, getTags
    set_websocket_auto_response = setWebSocketAutoResponse


class DurableObjectStorage:
    """`ctx.storage`: the object's own key-value store and SQL database."""

    def __init__(self, class_name: str, object_id: str):
        self._where = {"class": class_name, "id": object_id}
        self.sql = SqlStorage(self._where)

    async def _call(self, op: str, **args):
        return await host.call(STORAGE, op, {**self._where, **args})

    async def get(self, key, options=None):
        many = isinstance(key, (list, tuple))
        keys = list(key) if many else [key]
        for k in keys:
            if not isinstance(k, str):
                raise TypeError(f"keys must be str, got {type(k).__name__}")
        found = (await self._call("get", keys=keys))["values"]
        if many:
            return {k: decode(json.loads(found[k])) for k in keys if k in found}
        return decode(json.loads(found[key])) if key in found else None

    async def put(self, key, value=None, options=None):
        await self._call("put", entries=_entries(key, value))

    async def delete(self, key, options=None):
        many = isinstance(key, (list, tuple))
        deleted = (await self._call("delete", keys=list(key) if many else [key]))["deleted"]
        return deleted if many else deleted > 0

    async def deleteAll(self, options=None) -> None:
        await self._call("deleteAll")

    async def list(self, options=None, **kwargs):
        opts = dict(options or {}, **kwargs)
        args = {k: opts[k] for k in ("prefix", "start", "end", "reverse", "limit") if opts.get(k) is not None}
        entries = (await self._call("list", **args))["entries"]
        return {k: decode(json.loads(v)) for k, v in entries}

    async def transaction(self, closure):
        """Run `closure(txn)`; its writes through `txn` are committed together
        when it returns, and dropped if it raises or calls `txn.rollback()`.
        (Calls into an object are serialized, so nothing else interleaves.)"""
        txn = DurableObjectTransaction(self)
        result = closure(txn)
        if inspect.isawaitable(result):
            result = await result
        await txn._commit()
        return result

    async def setAlarm(self, scheduled_time, options=None) -> None:
        """Call the object's `alarm()` at `scheduled_time`: ms since the epoch
        (as `Date.now()` gives), or a `datetime`. Replaces any alarm set before."""
        if isinstance(scheduled_time, datetime.datetime):
            if scheduled_time.tzinfo is None:
                scheduled_time = scheduled_time.replace(tzinfo=datetime.timezone.utc)
            scheduled_time = scheduled_time.timestamp() * 1000
        if isinstance(scheduled_time, bool) or not isinstance(scheduled_time, (int, float)):
            raise TypeError(f"setAlarm() needs ms since the epoch or a datetime, got {type(scheduled_time).__name__}")
        await self._call("setAlarm", at=scheduled_time)

    async def getAlarm(self, options=None):
        """The alarm's time in ms since the epoch, or None."""
        return (await self._call("getAlarm"))["at"]

    async def deleteAlarm(self, options=None) -> None:
        await self._call("deleteAlarm")

    delete_all, set_alarm, get_alarm, delete_alarm = deleteAll, setAlarm, getAlarm, deleteAlarm


def _entries(key, value) -> dict:
    """`put(key, value)` or `put({key: value, ...})` → {key: encoded value}."""
    if isinstance(key, dict):
        return {k: dumps(v) for k, v in key.items()}
    if isinstance(key, str):
        return {key: dumps(value)}
    raise TypeError(f"put() needs a str key (or a dict of entries), got {type(key).__name__}")


class DurableObjectTransaction:
    """The `txn` of `ctx.storage.transaction(closure)`: reads see its own
    writes; the writes are held here until the closure returns."""

    def __init__(self, storage: DurableObjectStorage):
        self._storage = storage
        self._writes = {}  # key -> encoded value, or None when deleted
        self._rolled_back = False

    async def get(self, key, options=None):
        many = isinstance(key, (list, tuple))
        keys = list(key) if many else [key]
        unknown = [k for k in keys if k not in self._writes]
        stored = await self._storage.get(unknown) if unknown else {}
        found = {}
        for k in keys:
            if k in self._writes:
                if self._writes[k] is not None:
                    found[k] = decode(json.loads(self._writes[k]))
            elif k in stored:
                found[k] = stored[k]
        return found if many else found.get(key)

    async def put(self, key, value=None, options=None) -> None:
        self._writes.update(_entries(key, value))

    async def delete(self, key, options=None):
        many = isinstance(key, (list, tuple))
        keys = list(key) if many else [key]
        existing = await self.get(keys)
        for k in keys:
            self._writes[k] = None
        return len(existing) if many else bool(existing)

    async def list(self, options=None, **kwargs):
        opts = dict(options or {}, **kwargs)
        limit = opts.pop("limit", None)
        entries = await self._storage.list(opts)
        prefix, start, end = opts.get("prefix"), opts.get("start"), opts.get("end")
        for k, encoded in self._writes.items():
            if (prefix and not k.startswith(prefix)) or (start and k < start) or (end and k >= end):
                continue
            if encoded is None:
                entries.pop(k, None)
            else:
                entries[k] = decode(json.loads(encoded))
        keys = sorted(entries, reverse=bool(opts.get("reverse")))
        if limit is not None:
            keys = keys[:limit]
        return {k: entries[k] for k in keys}

    def rollback(self) -> None:
        self._rolled_back = True

    async def _commit(self) -> None:
        if self._rolled_back or not self._writes:
            return
        puts = {k: v for k, v in self._writes.items() if v is not None}
        deletes = [k for k, v in self._writes.items() if v is None]
        await self._storage._call("write", puts=puts, keys=deletes)


class SqlStorage:
    """`ctx.storage.sql`: `exec(query, *bindings)` runs now and returns a cursor."""

    def __init__(self, where: dict):
        self._where = where

    def exec(self, query: str, *bindings) -> "SqlCursor":
        from ._bindings import _d1_param

        params = [_d1_param(b) for b in bindings]
        result = host.run_sync(host.call(STORAGE, "sql", {**self._where, "sql": query, "params": params}))
        return SqlCursor(result)

    @property
    def databaseSize(self) -> int:
        result = self.exec("SELECT page_count * page_size AS size FROM pragma_page_count(), pragma_page_size()")
        return result.one()["size"]


class SqlCursor:
    """Rows of `sql.exec`: iterate (rows as objects), `one()`, `toArray()`, `raw()`."""

    def __init__(self, result: dict):
        from ._bindings import _d1_value

        self.columnNames = list(result.get("columns") or [])
        self._rows = [[_d1_value(v) for v in row] for row in result.get("rows") or []]
        meta = result.get("meta") or {}
        self.rowsRead = meta.get("rows_read", len(self._rows))
        self.rowsWritten = meta.get("rows_written", 0)
        self._next = 0

    def _object(self, row) -> JsObject:
        return JsObject(dict(zip(self.columnNames, row)))

    def __iter__(self):
        while self._next < len(self._rows):
            row = self._rows[self._next]
            self._next += 1
            yield self._object(row)

    def next(self):
        if self._next >= len(self._rows):
            return JsObject({"done": True})
        row = self._rows[self._next]
        self._next += 1
        return JsObject({"done": False, "value": self._object(row)})

    def toArray(self) -> list:
        return list(self)

    def one(self) -> JsObject:
        rest = self.toArray()
        if len(rest) != 1:
            raise JsException(f"Error: Expected exactly one result from SQL query, but got {'no' if not rest else len(rest)} results.")
        return rest[0]

    def raw(self):
        while self._next < len(self._rows):
            row = self._rows[self._next]
            self._next += 1
            yield list(row)

    to_array = toArray
