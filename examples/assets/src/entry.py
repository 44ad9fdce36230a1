from urllib.parse import urlparse

from workers import Request, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/api/hello":
            return Response.json({"hello": "from the worker"})
        if path.startswith("/api/asset/"):
            # Read a static file through the binding, then change the response.
            name = path.removeprefix("/api/asset")
            asset = await self.env.ASSETS.fetch(Request(f"https://assets.local{name}"))
            text = await asset.text()
            return Response(
                text.upper(),
                status=asset.status,
                headers={"content-type": asset.headers.get("content-type") or "text/plain"},
            )
        # No file matched: the worker answers.
        return Response(f"the worker handled {request.method} {path}", status=200)
