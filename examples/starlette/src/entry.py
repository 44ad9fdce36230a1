"""A Starlette app served through `asgi.fetch`; `env` is `request.scope["env"]`."""

import asgi
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect
from workers import WorkerEntrypoint


async def home(request):
    env = request.scope["env"]
    return JSONResponse({"message": env.GREETING, "name": request.query_params.get("name", "world")})


async def shout(request):
    text = (await request.body()).decode()
    return PlainTextResponse(text.upper(), status_code=201, headers={"x-served-by": "starlette"})


async def reverse(websocket):
    """A WebSocket route: each text comes back reversed; "bye" closes."""
    await websocket.accept()
    await websocket.send_text(f"hello {websocket.query_params.get('name', 'there')}")
    try:
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close(code=4001)
                return
            await websocket.send_text(text[::-1])
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[Route("/", home), Route("/shout", shout, methods=["POST"]), WebSocketRoute("/ws", reverse)])


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await asgi.fetch(app, request, self.env)
