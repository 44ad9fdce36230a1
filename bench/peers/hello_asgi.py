"""The hello example as a native ASGI app, for uvicorn: the same response bytes."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain;charset=UTF-8"), (b"content-length", b"12")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello world!"})
