"""Notes in D1. Set up the table first:

    taipan d1 migrations apply notes-db -c examples/d1

POST /notes {"author": ..., "body": ...} adds one; GET /notes lists them;
GET /notes/count counts them.
"""

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = "/" + request.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        db = self.env.DB
        if path == "/notes" and request.method == "POST":
            note = await request.json()
            result = await db.prepare("INSERT INTO notes (author, body) VALUES (?, ?)").bind(
                note["author"], note["body"]
            ).run()
            return Response.json({"id": result.meta.last_row_id}, status=201)
        if path == "/notes":
            rows = await db.prepare("SELECT id, author, body FROM notes ORDER BY id").all()
            return Response.json([row.to_py() for row in rows.results])
        if path == "/notes/count":
            count = await db.prepare("SELECT count(*) AS n FROM notes").first("n")
            return Response.json({"count": count})
        return Response("not found\n", status=404)
