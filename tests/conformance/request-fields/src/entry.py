from workers import Response, WorkerEntrypoint


STASHED = []


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.method == "PUT":
            # Kept past its request: what was read stays, the rest says why.
            STASHED[:] = [request, request.method]
            return Response("stashed")
        if request.method == "GET" and STASHED:
            old, method = STASHED
            try:
                url = old.url
            except RuntimeError as e:
                url = str(e)
            return Response.json({"method": method, "old_method": old.method, "url": url})
        data = await request.json() if request.method == "POST" else None
        return Response.json(
            {
                "method": request.method,
                "url": request.url,
                "ua": request.headers.get("User-Agent"),
                "multi": request.headers.get("x-multi"),
                "has_missing": "x-missing" in request.headers,
                "data": data,
            }
        )
