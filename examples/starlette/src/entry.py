"""A Starlette app served through `asgi.fetch`; `env` is `request.scope["env"]`."""

import asgi
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from workers import WorkerEntrypoint


async def home(request):
    env = request.scope["env"]
    return JSONResponse({"message": env.GREETING, "name": request.query_params.get("name", "world")})


async def shout(request):
    text = (await request.body()).decode()
    return PlainTextResponse(text.upper(), status_code=201, headers={"x-served-by": "starlette"})


app = Starlette(routes=[Route("/", home), Route("/shout", shout, methods=["POST"])])


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await asgi.fetch(app, request, self.env)
