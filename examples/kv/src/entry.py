"""A KV-backed note store: PUT /notes/<key> stores the body, GET reads it,
DELETE removes it, GET /notes lists the keys (?prefix=, ?cursor=)."""

import json

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        query = dict(p.split("=", 1) for p in request.url.partition("?")[2].split("&") if "=" in p)
        kv = self.env.NOTES
        if path == "notes":
            listing = await kv.list(prefix=query.get("prefix"), limit=int(query.get("limit", 1000)), cursor=query.get("cursor"))
            body = {"keys": [k.name for k in listing.keys], "list_complete": listing.list_complete}
            if not listing.list_complete:
                body["cursor"] = listing.cursor
            return Response.json(body)
        if not path.startswith("notes/"):
            return Response("try /notes/<key>\n", status=404)
        key = path[len("notes/"):]
        if request.method == "PUT":
            text = await request.text()
            options = {"metadata": {"length": len(text)}}
            if "ttl" in query:
                options["expirationTtl"] = int(query["ttl"])
            await kv.put(key, text, **options)
            return Response("stored\n", status=201)
        if request.method == "DELETE":
            await kv.delete(key)
            return Response(None, status=204)
        found = await kv.getWithMetadata(key)
        if found.value is None:
            return Response("not found\n", status=404)
        return Response(found.value, headers={"x-metadata": json.dumps(found.metadata.to_py())})
