"""The echo bench/websockets measures: each message comes straight back."""

from js import Response, WebSocketPair


async def on_fetch(request, env):
    client, server = WebSocketPair.new().object_values()
    server.accept()
    server.addEventListener("message", lambda event: server.send(event.data))
    return Response(None, status=101, web_socket=client)
