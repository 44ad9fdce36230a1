"""examples/pandas's summary under uvicorn (its own `summarize`), for
bench/packages: POST a CSV to /summary?by=COLUMN."""

import io
import json
from urllib.parse import parse_qs

import pandas as pd
from entry import summarize  # examples/pandas/src on PYTHONPATH


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    by = parse_qs(scope["query_string"].decode()).get("by", [None])[0]
    frame = pd.read_csv(io.StringIO(body.decode()))
    payload = json.dumps(summarize(frame, by)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
