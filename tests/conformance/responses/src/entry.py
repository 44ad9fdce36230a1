"""Every way a handler shapes a response: what clients see must match Workers."""

from urllib.parse import urlparse

from workers import Headers, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/bytes":
            return Response(b"\x00\x01\x02")
        if path == "/json":
            return Response.json({"ok": True, "items": [1, "two"]}, status=201, headers={"X-Extra": "1"})
        if path == "/redirect":
            return Response.redirect("https://example.com/next", 307)
        if path == "/headers":
            headers = Headers()
            headers.append("Set-Cookie", "a=1")
            headers.append("Set-Cookie", "b=2")
            headers.set("X-Custom", "value")
            return Response("with headers", status=202, headers=headers)
        if path == "/empty":
            return Response(None, status=204)
        if path == "/empty-string-204":
            # What frameworks send for "no content": an empty body, not None.
            return Response("", status=204)
        if path == "/not-modified":
            return Response(b"", status=304, headers={"ETag": '"v1"'})
        if path == "/wsgi-204":
            from workers.wsgi import fetch as wsgi_fetch

            def app(environ, start_response):
                start_response("204 No Content", [("Content-Type", "text/html; charset=utf-8")])
                return [b""]

            return await wsgi_fetch(app, request, self.env)
        if path == "/body-with-204":
            return Response("not allowed", status=204)
        if path == "/stream":
            return Response((f"chunk{i};" for i in range(3)))
        if path == "/large":
            # Past the one-call response's limit: streamed through wasi:http.
            return Response(b"x" * (2 << 20) + b"end")
        if path == "/one-mib":
            return Response(b"y" * (1 << 20))
        if path == "/refused-header":
            # A name wasi:http refuses (not a token): a 500, not a crash.
            return Response("never sent", headers={"bad(name": "1"})
        if path == "/wrong-length":
            return Response("abc", headers={"content-length": "5"})
        if path == "/unicode":
            return Response("héllo ✓")
        return Response("not found", status=404)
