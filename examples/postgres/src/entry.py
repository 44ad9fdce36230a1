"""Notes in PostgreSQL, through pg8000 over the sandbox's TCP sockets.

GET / describes the database; POST /notes (the note as the body) adds one;
GET /notes lists them; GET /notes/search?q=... finds them (a bad pattern is a
400 from the database's own error).
"""

from urllib.parse import parse_qs, unquote, urlparse

import pg8000.native
from workers import Response, WorkerEntrypoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id serial PRIMARY KEY,
    body text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
)
"""


def connect(connection_string: str) -> pg8000.native.Connection:
    """A connection from a postgres:// URL (what `env.DB.connectionString` is)."""
    url = urlparse(connection_string)
    return pg8000.native.Connection(
        user=unquote(url.username or "postgres"),
        password=unquote(url.password or ""),
        host=url.hostname or "localhost",
        port=url.port or 5432,
        database=url.path.lstrip("/") or None,
        ssl_context=False,  # the sandbox has no TLS: use a database on a trusted network
        timeout=10,
    )


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        db = self.env.DB
        if url.path == "/":
            return Response.json(
                {"host": db.host, "port": db.port, "user": db.user, "database": db.database}
            )
        conn = connect(db.connectionString)
        try:
            conn.run(SCHEMA)
            if url.path == "/notes" and request.method == "POST":
                body = await request.text()
                [[note_id]] = conn.run("INSERT INTO notes (body) VALUES (:body) RETURNING id", body=body)
                return Response.json({"id": note_id}, status=201)
            if url.path == "/notes":
                rows = conn.run("SELECT id, body, created FROM notes ORDER BY id")
                return Response.json([{"id": i, "body": b, "created": c.isoformat()} for i, b, c in rows])
            if url.path == "/notes/search":
                pattern = parse_qs(url.query).get("q", [""])[0]
                try:
                    rows = conn.run("SELECT id, body FROM notes WHERE body ~ :pattern ORDER BY id", pattern=pattern)
                except pg8000.native.DatabaseError as e:
                    # e.args[0] is the server's error: {"S": severity, "C": code, "M": message, ...}
                    return Response.json({"error": e.args[0].get("M")}, status=400)
                return Response.json([{"id": i, "body": b} for i, b in rows])
            return Response("not found\n", status=404)
        finally:
            conn.close()
