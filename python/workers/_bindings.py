"""The binding objects on `env`: KV, D1, R2, service bindings, queue
producers (`_queues.py`), workflows (`_workflows.py`), rate limiters,
version metadata and hyperdrive.

Each method checks its arguments here (bad arguments raise TypeError or
ValueError, as the Workers runtime does) and then makes one host call; the
storage lives in the host. Results come back as "JS objects" (`JsObject`:
read as attributes or items, `.to_py()` for plain Python), as Workers code
written for Pyodide expects.
"""

import base64
import json

from _taipan import host
from pyodide.ffi import JsArray, JsException, JsObject, JsProxy, to_js

from ._args import camel as _camel
from ._args import options as _options
from ._args import plain as _plain
from ._durable import DurableObjectNamespace
from ._queues import Queue
from ._workflows import Workflow

KV_TYPES = ("text", "json", "arrayBuffer", "bytes", "stream")


def _key(key) -> str:
    if not isinstance(key, str):
        raise TypeError(f"the key must be a str, got {type(key).__name__}")
    return key


class KVNamespace:
    """`env.MY_KV`: a KV namespace."""

    def __init__(self, binding: str):
        self._binding = binding

    async def get(self, key, type=None, **options):
        value, _ = await self._get(key, type, options)
        return value

    async def getWithMetadata(self, key, type=None, **options):
        value, metadata = await self._get(key, type, options)
        return JsObject({"value": value, "metadata": to_js(metadata), "cacheStatus": None})

    get_with_metadata = getWithMetadata

    async def _get(self, key, type, options):
        if isinstance(type, (dict, JsProxy)):
            options, type = _options(type, options), None
        else:
            options = _options(None, options)
        type = type or options.get("type") or "text"
        if type not in KV_TYPES:
            raise TypeError(f"unknown KV get type {type!r}; use one of {', '.join(KV_TYPES)}")
        meta, reader = await host.call(self._binding, "get", {"key": _key(key)}, payload=True)
        if meta is None:
            reader.close()
            return None, None
        metadata = meta.get("metadata")
        if type == "stream":
            return reader, metadata
        data = reader.read_all()
        if type in ("arrayBuffer", "bytes"):
            return data, metadata
        if type == "json":
            return to_js(json.loads(data)), metadata
        return data.decode("utf-8", errors="replace"), metadata

    async def put(self, key, value, options=None, **kwargs):
        options = _options(options, kwargs)
        value = _plain(value)
        if isinstance(value, str):
            body = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            body = bytes(value)
        elif hasattr(value, "__iter__") and not isinstance(value, dict):
            body = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in value)
        else:
            raise TypeError(f"KV put() accepts str or bytes values, got {type(value).__name__}")
        args = {"key": _key(key)}
        for name in ("expiration", "expirationTtl"):
            if name in options:
                number = options[name]
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    raise TypeError(f"{name} must be a number of seconds")
                args[name] = int(number)
        if "metadata" in options:
            args["metadata"] = _plain(options["metadata"])
        await host.call(self._binding, "put", args, body)

    async def delete(self, key):
        await host.call(self._binding, "delete", {"key": _key(key)})

    async def list(self, options=None, **kwargs):
        options = _options(options, kwargs)
        args = {k: options[k] for k in ("prefix", "limit", "cursor") if options.get(k) is not None}
        if "limit" in args and (isinstance(args["limit"], bool) or not isinstance(args["limit"], int)):
            raise TypeError("limit must be an int")
        result = await host.call(self._binding, "list", args)
        keys = JsArray(JsObject(k) for k in result["keys"])
        out = {"keys": keys, "list_complete": result["list_complete"], "cacheStatus": None}
        if result.get("cursor"):
            out["cursor"] = result["cursor"]
        return JsObject(out)


# -- D1 -------------------------------------------------------------------


def _d1_param(value):
    value = _plain(value)
    if value is None or isinstance(value, (str, int, float)):
        return value  # bool is an int: true/false bind as 1/0, as in D1
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$blob": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(
        f"D1_TYPE_ERROR: type {type(value).__name__!r} not supported for a bound value; "
        "use None, bool, int, float, str or bytes"
    )


def _d1_value(value):
    if isinstance(value, dict) and "$blob" in value:
        return base64.b64decode(value["$blob"])
    return value


def _d1_result(raw: dict) -> JsObject:
    columns = raw.get("columns", [])
    rows = JsArray(JsObject(zip(columns, map(_d1_value, row))) for row in raw.get("rows", []))
    return JsObject({"results": rows, "success": True, "meta": JsObject(raw.get("meta", {}))})


class D1PreparedStatement:
    def __init__(self, db: "D1Database", sql: str, params=()):
        self._db = db
        self._sql = sql
        self._params = list(params)

    def bind(self, *values):
        return D1PreparedStatement(self._db, self._sql, [_d1_param(v) for v in values])

    def _statement(self) -> dict:
        return {"sql": self._sql, "params": self._params}

    async def all(self):
        return _d1_result(await self._db._run(self._statement()))

    run = all  # D1's run() returns the same result object

    async def first(self, column=None):
        raw = await self._db._run(self._statement())
        rows = raw.get("rows", [])
        if not rows:
            return None
        columns = raw.get("columns", [])
        if column is not None:
            if column not in columns:
                raise host.HostError("Error", f"D1_COLUMN_NOTFOUND: Column not found ({column})")
            return _d1_value(rows[0][columns.index(column)])
        return JsObject(zip(columns, map(_d1_value, rows[0])))

    async def raw(self, options=None, **kwargs):
        options = _options(options, kwargs)
        raw = await self._db._run(self._statement())
        rows = [JsArray(map(_d1_value, row)) for row in raw.get("rows", [])]
        if options.get("columnNames"):
            rows.insert(0, JsArray(raw.get("columns", [])))
        return JsArray(rows)


class D1Database:
    """`env.DB`: a D1 (SQLite) database."""

    def __init__(self, binding: str):
        self._binding = binding

    def prepare(self, sql):
        if not isinstance(sql, str):
            raise TypeError(f"prepare() takes the SQL as a str, got {type(sql).__name__}")
        return D1PreparedStatement(self, sql)

    async def batch(self, statements):
        statements = list(_plain(statements))
        if not all(isinstance(s, D1PreparedStatement) for s in statements):
            raise TypeError("batch() takes a list of prepared statements")
        results = await host.call(self._binding, "batch", {"statements": [s._statement() for s in statements]})
        return JsArray(_d1_result(r) for r in results)

    async def exec(self, sql):
        if not isinstance(sql, str):
            raise TypeError("exec() takes the SQL as a str")
        return JsObject(await host.call(self._binding, "exec", {"sql": sql}))

    async def dump(self):
        raise host.HostError("Error", "D1 dump() is deprecated and not supported")

    async def _run(self, statement: dict) -> dict:
        """One statement: a batch of one."""
        results = await host.call(self._binding, "batch", {"statements": [statement]})
        return results[0]


# -- R2 -------------------------------------------------------------------


class R2Object:
    """An object's metadata (from `head`, `put`, `list`)."""

    def __init__(self, meta: dict):
        import datetime

        self.key = meta["key"]
        self.version = meta.get("version", "")
        self.size = meta["size"]
        self.etag = meta["etag"]
        self.httpEtag = f'"{self.etag}"'
        self.uploaded = datetime.datetime.fromtimestamp(meta["uploaded"] / 1000, tz=datetime.timezone.utc)
        self.httpMetadata = JsObject(meta.get("httpMetadata") or {})
        self.customMetadata = JsObject(meta.get("customMetadata") or {})
        self.storageClass = "Standard"
        self.checksums = JsObject({"md5": self.etag})
        if "range" in meta:
            self.range = JsObject(meta["range"])

    http_etag = property(lambda self: self.httpEtag)
    http_metadata = property(lambda self: self.httpMetadata)
    custom_metadata = property(lambda self: self.customMetadata)

    def writeHttpMetadata(self, headers) -> None:
        names = {
            "contentType": "content-type",
            "contentLanguage": "content-language",
            "contentDisposition": "content-disposition",
            "contentEncoding": "content-encoding",
            "cacheControl": "cache-control",
        }
        for field, header in names.items():
            value = self.httpMetadata.to_py().get(field)
            if value:
                headers.set(header, str(value))

    write_http_metadata = writeHttpMetadata

    def __repr__(self) -> str:
        return f"<R2Object {self.key!r} {self.size} bytes>"


class R2ObjectBody(R2Object):
    """An object with its body, read from the host as the worker reads it."""

    def __init__(self, meta: dict, reader):
        super().__init__(meta)
        self._reader = reader
        self.bodyUsed = False

    @property
    def body(self):
        return self._reader

    def _read(self) -> bytes:
        if self.bodyUsed:
            raise TypeError("body has already been used")
        self.bodyUsed = True
        return self._reader.read_all()

    async def arrayBuffer(self) -> bytes:
        return self._read()

    bytes = arrayBuffer

    async def text(self) -> str:
        return self._read().decode("utf-8", errors="replace")

    async def json(self):
        return to_js(json.loads(self._read()))


def _r2_body(value):
    value = _plain(value)
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    body = getattr(value, "_body_source", None)  # a Request or Response: its body
    if body is not None or hasattr(value, "_body_source"):
        value = body if body is not None else b""
        if isinstance(value, bytes):
            return value
    if hasattr(value, "__iter__") and not isinstance(value, dict):
        return value  # streamed chunk by chunk
    raise TypeError(f"R2 put() accepts str, bytes, a stream or None, got {type(value).__name__}")


def _http_metadata(value) -> dict:
    value = _plain(value) or {}
    if hasattr(value, "get") and hasattr(value, "has") and not isinstance(value, dict):
        names = {
            "content-type": "contentType",
            "content-language": "contentLanguage",
            "content-disposition": "contentDisposition",
            "content-encoding": "contentEncoding",
            "cache-control": "cacheControl",
        }
        return {field: value.get(header) for header, field in names.items() if value.has(header)}
    if not isinstance(value, dict):
        raise TypeError("httpMetadata must be a dict or Headers")
    return {_camel(k): v for k, v in value.items()}


class R2Bucket:
    """`env.BUCKET`: an R2 bucket."""

    def __init__(self, binding: str):
        self._binding = binding

    async def put(self, key, value, options=None, **kwargs):
        options = _options(options, kwargs)
        args = {"key": _key(key)}
        if "httpMetadata" in options:
            args["httpMetadata"] = _http_metadata(options["httpMetadata"])
        if "customMetadata" in options:
            custom = _plain(options["customMetadata"])
            if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
                raise TypeError("customMetadata must be a dict of str to str")
            args["customMetadata"] = custom
        return R2Object(await host.call(self._binding, "put", args, _r2_body(value)))

    async def get(self, key, options=None, **kwargs):
        options = _options(options, kwargs)
        args = {"key": _key(key)}
        if options.get("range") is not None:
            args["range"] = _plain(options["range"])
        meta, reader = await host.call(self._binding, "get", args, payload=True)
        if meta is None:
            reader.close()
            return None
        return R2ObjectBody(meta, reader)

    async def head(self, key):
        meta = await host.call(self._binding, "head", {"key": _key(key)})
        return R2Object(meta) if meta else None

    async def delete(self, keys):
        keys = _plain(keys)
        if isinstance(keys, (list, tuple)):
            await host.call(self._binding, "delete", {"keys": [_key(k) for k in keys]})
        else:
            await host.call(self._binding, "delete", {"key": _key(keys)})

    async def list(self, options=None, **kwargs):
        options = _options(options, kwargs)
        args = {k: options[k] for k in ("prefix", "cursor", "delimiter", "limit") if options.get(k) is not None}
        result = await host.call(self._binding, "list", args)
        out = {
            "objects": JsArray(R2Object(o) for o in result["objects"]),
            "truncated": result["truncated"],
            "delimitedPrefixes": JsArray(result["delimitedPrefixes"]),
        }
        if result.get("cursor"):
            out["cursor"] = result["cursor"]
        return JsObject(out)


# -- service bindings ----------------------------------------------------------


class Fetcher:
    """`env.ASSETS`: `fetch` answers from the worker's static assets; the
    base of `ServiceBinding`."""

    def __init__(self, binding: str):
        self._binding = binding

    async def fetch(self, input, init=None, **kwargs):
        from workers._fetch import fetch_via

        return await fetch_via(self._binding, input, init, kwargs)


class ServiceBinding(Fetcher):
    """`env.OTHER`: a service binding. `fetch` sends a request to the other
    worker (its `Default` entrypoint, or the one the binding names); any other
    attribute is an RPC method of that entrypoint: `await env.OTHER.add(1, 2)`."""

    def __getattr__(self, name: str):
        from workers._rpc import method

        return method(self._binding, name)

    def __repr__(self) -> str:
        return f"<ServiceBinding {self._binding}>"


# -- rate limiting -------------------------------------------------------------


class RateLimit:
    """`env.LIMITER`: a rate limiting binding. `await env.LIMITER.limit(key=k)`
    (or `limit({"key": k})`) → an object with `.success`."""

    def __init__(self, binding: str):
        self._binding = binding

    async def limit(self, options=None, **kwargs):
        options = _options(options, kwargs)
        result = await host.call(self._binding, "limit", {"key": _key(options.get("key"))})
        return JsObject(result)

    def __repr__(self) -> str:
        return f"<RateLimit {self._binding}>"


# -- hyperdrive ----------------------------------------------------------------


class Hyperdrive(JsObject):
    """`env.DB`: a hyperdrive binding: `connectionString`, `host`, `port`,
    `user`, `password` and `database` of the database the worker connects to
    with its own driver (the host gives the values; there is no call)."""

    __slots__ = ("_binding",)

    def __init__(self, binding: str, fields: dict):
        super().__init__(fields)
        object.__setattr__(self, "_binding", binding)

    def __repr__(self) -> str:
        data = object.__getattribute__(self, "_data")
        return f"<Hyperdrive {self._binding} {data.get('user')}@{data.get('host')}:{data.get('port')}/{data.get('database')}>"


class UnavailableHyperdrive(Hyperdrive):
    """A hyperdrive binding with no database (`taipan serve` without its
    secret): reading any of its values raises the host's explanation."""

    __slots__ = ("_error",)

    def __init__(self, binding: str, error: str):
        super().__init__(binding, {})
        object.__setattr__(self, "_error", error)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise JsException(self._error)

    def __getitem__(self, key):
        raise JsException(self._error)

    def __repr__(self) -> str:
        return f"<Hyperdrive {self._binding} (no database)>"


BINDING_CLASSES = {
    "kv": KVNamespace,
    "d1": D1Database,
    "r2": R2Bucket,
    "service": ServiceBinding,
    "assets": Fetcher,
    "durable_object": DurableObjectNamespace,
    "queue": Queue,
    "ratelimit": RateLimit,
    "workflow": Workflow,
}


def make_bindings(kinds: dict) -> dict:
    """`{name: kind}` from the host → the objects on `env`. A binding whose
    value the host gives outright is `{name: {"kind": …, …fields}}`:
    `version_metadata` (`id`, `tag`, `timestamp`), `hyperdrive`
    (`connectionString`, `host`, `port`, `user`, `password`, `database`, or
    `error`)."""
    bindings = {}
    for name, kind in kinds.items():
        if isinstance(kind, dict):
            fields = {k: v for k, v in kind.items() if k != "kind"}
            if kind.get("kind") == "hyperdrive":
                error = fields.get("error")
                bindings[name] = UnavailableHyperdrive(name, error) if error else Hyperdrive(name, fields)
                continue
            bindings[name] = JsObject(fields)
            continue
        cls = BINDING_CLASSES.get(kind)
        if cls is not None:
            bindings[name] = cls(name)
    return bindings
