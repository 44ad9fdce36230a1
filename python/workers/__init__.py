"""The `workers` module of Cloudflare Python Workers, as Taipan provides it."""

from ._bindings import D1Database, Fetcher, KVNamespace, R2Bucket
from ._cache import Cache, CacheStorage, caches
from ._durable import DurableObject, DurableObjectId, DurableObjectNamespace, DurableObjectStub
from ._context import Env, ExecutionContext, ScheduledController, import_from_javascript, patch_env
from ._fetch import fetch
from ._forms import Blob, File, FormData
from ._headers import Headers
from ._http import Request, Response
from ._websocket import WebSocket, WebSocketPair, WebSocketRequestResponsePair

__all__ = [
    "Blob",
    "Cache",
    "CacheStorage",
    "D1Database",
    "DurableObject",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectStub",
    "Env",
    "ExecutionContext",
    "FetchResponse",
    "Fetcher",
    "File",
    "FormData",
    "Headers",
    "KVNamespace",
    "R2Bucket",
    "Request",
    "Response",
    "ScheduledController",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "WorkflowEntrypoint",
    "caches",
    "env",
    "fetch",
    "handler",
    "import_from_javascript",
    "patch_env",
    "python_from_rpc",
    "python_to_rpc",
    "waitUntil",
    "wait_until",
]

# What `fetch` returns is a `Response` here.
FetchResponse = Response


class WorkerEntrypoint:
    """Base class of the class-style worker: `class Default(WorkerEntrypoint)`.

    An instance is made per request with `self.env` (the bindings) and
    `self.ctx` (the execution context), as on Workers.
    """

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env


class WorkflowEntrypoint:
    """Base class of a Workflow (`class MyWorkflow(WorkflowEntrypoint)` with
    `async def run(self, event, step)`), named by a `[[workflows]]` entry's
    `class_name`; see `workers._workflows`."""

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env


def handler(func):
    """`@handler` on `on_fetch` and friends: their arguments are Python types
    already in Taipan, so this returns `func` as it is."""
    return func


def python_to_rpc(value):
    """Values cross RPC as they are in Taipan (see `workers._rpc`)."""
    return value


def python_from_rpc(value):
    return value


def __getattr__(name):
    # `from workers import env` / `workers.wait_until(...)`: the sandbox's
    # bindings and the running request's ctx, looked up when used.
    if name == "env":
        from ._context import live_env

        return live_env
    if name in ("waitUntil", "wait_until"):
        return import_from_javascript("cloudflare:workers").waitUntil
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
