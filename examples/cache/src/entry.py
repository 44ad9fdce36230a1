"""A caching proxy in front of UPSTREAM, with the Cache API.

GET /<path> answers from `caches.default` when it holds a fresh response,
else fetches UPSTREAM/<path> and stores the answer for as long as its
Cache-Control (or Expires) allows; `x-cache` says HIT or MISS. A request's
If-None-Match / If-Modified-Since get a 304 from the cache. GET /named/<path>
does the same with a named cache (`await caches.open("proxy")`), and DELETE
on either purges the entry.

    curl -i localhost:8787/            # x-cache: MISS, then HIT
    curl -i -X DELETE localhost:8787/  # {"deleted": true}
"""

from urllib.parse import urlsplit

from js import caches
from workers import Response, WorkerEntrypoint, fetch

# Request headers passed on to the upstream (a response that varies on one
# is stored once per value: its `Vary`).
FORWARDED = ("accept", "accept-language")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlsplit(request.url)
        path = parts.path
        cache = caches.default
        if path.startswith("/named/"):
            cache = await caches.open("proxy")
            path = path.removeprefix("/named")
        if request.method == "DELETE":
            # A URL is a GET key (a DELETE request would match nothing).
            return Response.json({"deleted": await cache.delete(request.url)})
        if request.method != "GET":
            return Response("only GET and DELETE\n", status=405)

        cached = await cache.match(request)
        if cached is not None:
            cached.headers.set("x-cache", "HIT")
            return cached

        url = self.env.UPSTREAM.rstrip("/") + path + (f"?{parts.query}" if parts.query else "")
        headers = {name: value for name, value in request.headers if name in FORWARDED}
        upstream = await fetch(url, headers=headers)
        body = await upstream.bytes()
        # put() reads the body it is given: store one copy, answer another.
        # (`self.ctx.waitUntil(cache.put(...))` would answer before storing.)
        await cache.put(request, Response(body, status=upstream.status, headers=upstream.headers))
        response = Response(body, status=upstream.status, headers=upstream.headers)
        response.headers.set("x-cache", "MISS")
        return response
