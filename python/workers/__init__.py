"""The `workers` module of Cloudflare Python Workers, as Taipan provides it."""

from ._context import Env, ExecutionContext
from ._headers import Headers
from ._http import Request, Response

__all__ = [
    "Env",
    "ExecutionContext",
    "Headers",
    "Request",
    "Response",
    "WorkerEntrypoint",
]


class WorkerEntrypoint:
    """Base class of the class-style worker: `class Default(WorkerEntrypoint)`.

    An instance is made per request with `self.env` (the bindings) and
    `self.ctx` (the execution context), as on Workers.
    """

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env
