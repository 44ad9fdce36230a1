"""Calls between workers: RPC on a Durable Object stub or a service binding
(`await env.OTHER.add(1, 2)`), and the values they carry.

Arguments and results travel as JSON in an encoding that keeps their Python
types (bytes, dicts, sets, and the `JsObject`/`JsArray` that
`pyodide.ffi.to_js` makes), so what the callee returns is what the caller
gets. The callee side (`answer`) runs in `_taipan.dispatch`.
"""

import base64
import inspect
import json

from _taipan import contract, host
from pyodide.ffi import JsArray, JsException, JsObject

# Names a caller cannot reach by RPC: handlers with their own route.
NOT_RPC = frozenset({"fetch", "scheduled", "queue", "tail", "alarm", "test"})


def encode(value):
    """A Python value → JSON-able data that `decode` turns back into it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, JsObject):
        return {"$js": {str(k): encode(v) for k, v in value.object_entries()}}
    if isinstance(value, JsArray):
        return {"$jsarray": [encode(v) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("dict keys must be str to pass a dict to another worker or a Durable Object")
        return {"$dict": {k: encode(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"$set": [encode(v) for v in value]}
    raise TypeError(f"a {type(value).__name__} cannot be passed to another worker or stored by a Durable Object")


def decode(data):
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$bytes" in data:
        return base64.b64decode(data["$bytes"])
    if "$js" in data:
        return JsObject({k: decode(v) for k, v in data["$js"].items()})
    if "$jsarray" in data:
        return JsArray(decode(v) for v in data["$jsarray"])
    if "$dict" in data:
        return {k: decode(v) for k, v in data["$dict"].items()}
    if "$set" in data:
        return set(decode(v) for v in data["$set"])
    return {k: decode(v) for k, v in data.items()}


def dumps(value) -> str:
    return json.dumps(encode(value), separators=(",", ":"))


async def call(binding: str, method: str, args, kwargs, headers=()):
    """Call `method(*args, **kwargs)` on what `binding` reaches; its result,
    or its exception raised here as a `JsException` of the same name."""
    body = json.dumps(
        {"method": method, "args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()}}
    ).encode("utf-8")
    future = host.send("POST", "http", contract.AUTHORITY_BINDING, f"/{binding}/{contract.OP_RPC}", list(headers), body)
    response = await host.response_of(future)
    status = response.status()
    failed = host.is_host_error(response)
    data = host.BodyReader(response).read_all()
    if failed:
        raise host.error_of(data)
    try:
        reply = json.loads(data)
    except ValueError:
        raise JsException(f"the RPC receiver answered {status}: {data[:200]!r}") from None
    if status >= 400 or "error" in reply:
        error = reply.get("error") or {}
        raise host.HostError(error.get("name", "Error"), error.get("message", ""))
    return decode(reply.get("value"))


def method(binding: str, name: str, headers=(), check=None):
    """`stub.name` / `env.OTHER.name`: an async function calling `name` over
    RPC (`check()`, if given, runs first and may refuse the call)."""
    if name.startswith("_"):
        raise AttributeError(name)

    async def rpc(*args, **kwargs):
        if check is not None:
            check()
        return await call(binding, name, args, kwargs, headers)

    rpc.__name__ = name
    return rpc


def answer(instance, payload: str, run, log):
    """Run the RPC call in `payload` on `instance`: (status, reply body).
    `run` drives an awaitable to its result; `log(what, exc)` records a failure."""
    call = json.loads(payload or "{}")
    name = call.get("method", "")
    method = None if name.startswith("_") or name in NOT_RPC else getattr(instance, name, None)
    if not callable(method):
        error = {"name": "TypeError", "message": f'The RPC receiver does not implement the method "{name}".'}
        return 500, {"error": error}
    try:
        args = [decode(a) for a in call.get("args", [])]
        kwargs = {k: decode(v) for k, v in call.get("kwargs", {}).items()}
        result = method(*args, **kwargs)
        if inspect.isawaitable(result):
            result = run(result)
        return 200, {"value": encode(result)}
    except Exception as exc:  # noqa: BLE001 - the caller's await raises it
        log(f"{type(instance).__name__}.{name} raised", exc)
        return 500, {"error": {"name": type(exc).__name__, "message": str(exc)}}
