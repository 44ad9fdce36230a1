"""examples/fastapi's app under uvicorn, with the worker's vars as scope["env"]
(what Taipan's asgi.fetch passes), for bench/packages."""

import types

from entry import app as fastapi_app  # noqa: E402  (examples/fastapi/src on PYTHONPATH)

ENV = types.SimpleNamespace(MESSAGE="Hello from FastAPI on Taipan")


async def app(scope, receive, send):
    if scope["type"] == "http":
        scope = {**scope, "env": ENV}
    await fastapi_app(scope, receive, send)
