"""Echo the request back: method, URL, headers and body as JSON.

`/raw` streams the body back as bytes instead (for large uploads).
"""

import base64
from urllib.parse import urlparse

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if urlparse(request.url).path == "/raw":
            body = await request.bytes()
            return Response(body, headers={"content-type": "application/octet-stream"})
        body = await request.bytes()
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode(), "base64"
        return Response.json(
            {
                "method": request.method,
                "url": request.url,
                "headers": [[name, value] for name, value in request.headers],
                "body": text,
                "encoding": encoding,
                "length": len(body),
            }
        )
