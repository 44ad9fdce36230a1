"""A stand-in for the `workers` module so an example's own module imports under
native CPython: the package benchmarks (bench/packages) serve the same app
code with uvicorn. Only what the examples use at import time."""


class WorkerEntrypoint:
    def __init__(self, ctx=None, env=None):
        self.ctx, self.env = ctx, env


class Response:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("bench peers answer through ASGI, not workers.Response")

    @staticmethod
    def json(*args, **kwargs):
        raise RuntimeError("bench peers answer through ASGI, not workers.Response")
