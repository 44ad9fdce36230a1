"""A WebSocket echo, as on Cloudflare: accept the server end of a pair and
return the client end in a 101. The listener's closure (the message count)
lives as long as the connection."""

from js import Response, WebSocketPair


async def on_fetch(request, env):
    if request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket\n", status=426)

    client, server = WebSocketPair.new().object_values()
    server.accept()
    count = 0

    def on_message(event):
        nonlocal count
        count += 1
        if event.data == "close":
            server.close(4000, f"closed after {count} messages")
        elif isinstance(event.data, str):
            server.send(f"{count}: {event.data}")
        else:
            server.send(bytes(reversed(bytes(event.data))))

    server.addEventListener("message", on_message)
    server.send("welcome")
    return Response(None, status=101, web_socket=client)
