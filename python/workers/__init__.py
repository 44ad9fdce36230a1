"""The `workers` module of Cloudflare Python Workers, as Taipan provides it."""

from ._bindings import D1Database, Fetcher, KVNamespace, R2Bucket
from ._durable import DurableObject, DurableObjectId, DurableObjectNamespace, DurableObjectStub
from ._context import Env, ExecutionContext, ScheduledController, import_from_javascript
from ._fetch import fetch
from ._headers import Headers
from ._http import Request, Response

__all__ = [
    "D1Database",
    "DurableObject",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectStub",
    "Env",
    "ExecutionContext",
    "Fetcher",
    "Headers",
    "KVNamespace",
    "R2Bucket",
    "Request",
    "Response",
    "ScheduledController",
    "WorkerEntrypoint",
    "fetch",
    "import_from_javascript",
]


class WorkerEntrypoint:
    """Base class of the class-style worker: `class Default(WorkerEntrypoint)`.

    An instance is made per request with `self.env` (the bindings) and
    `self.ctx` (the execution context), as on Workers.
    """

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env
