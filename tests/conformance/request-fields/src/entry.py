from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
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
