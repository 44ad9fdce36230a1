"""A worker split across modules and a package, with module state and lazy imports."""

from app import routes
from app.greeting import greet
from workers import Response, WorkerEntrypoint

hits = 0  # module globals persist while a sandbox is warm


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        global hits
        hits += 1
        path = request.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        if path == "lazy":
            # Imported on first use inside the handler, not at snapshot time.
            from app import lazy_helper
            import colorsys

            return Response.json({"lazy": lazy_helper.value(), "hls": colorsys.rgb_to_hls(1, 0, 0)})
        if path == "slow-random":
            import asyncio
            import random

            await asyncio.sleep(0.5)
            return Response.json({"hits": hits, "random": [random.random() for _ in range(3)]})
        if path == "random":
            import random

            return Response.json({"random": [random.random() for _ in range(3)]})
        if path == "hits":
            return Response.json({"hits": hits})
        return routes.dispatch(path, greet(self.env.APP_NAME))
