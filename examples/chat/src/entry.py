"""A chat room per Durable Object, with hibernatable WebSockets: the object
leaves memory while its members are quiet and is rebuilt from the snapshot on
the next message; the sockets, their tags and attachments stay open.

GET /rooms/<room>?name=<member>  (WebSocket)  join; send text to everyone
GET /rooms/<room>/stats                      {"wakes", "members", "in_memory"}
"""

import json
from urllib.parse import parse_qs, urlsplit

from workers import DurableObject, Response, WebSocketPair, WebSocketRequestResponsePair, WorkerEntrypoint


class ChatRoom(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        # In-memory only: gone when the object hibernates.
        self.messages_seen = 0
        self.woke = False
        ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))

    async def _wake(self):
        # Count each time the object is (re)built: one more after hibernation.
        if not self.woke:
            self.woke = True
            await self.ctx.storage.put("wakes", (await self.ctx.storage.get("wakes") or 0) + 1)

    async def fetch(self, request):
        await self._wake()
        url = urlsplit(request.url)
        if url.path.endswith("/stats"):
            return Response.json({
                "wakes": await self.ctx.storage.get("wakes"),
                "members": sorted(ws.deserializeAttachment()["name"] for ws in self.ctx.getWebSockets()),
                "in_memory": self.messages_seen,
            })
        if request.headers.get("Upgrade") != "websocket":
            return Response("Expected Upgrade: websocket\n", status=426)
        name = parse_qs(url.query).get("name", ["anon"])[0]
        client, server = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(server, [name])
        server.serializeAttachment({"name": name})
        self._broadcast({"joined": name})
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        await self._wake()
        self.messages_seen += 1
        self._broadcast({"from": ws.deserializeAttachment()["name"], "text": message})

    async def webSocketClose(self, ws, code, reason, was_clean):
        self._broadcast({"left": ws.deserializeAttachment()["name"]}, skip=ws)

    def _broadcast(self, payload, skip=None):
        text = json.dumps(payload)
        for ws in self.ctx.getWebSockets():
            if ws is not skip and ws.readyState == ws.OPEN:
                ws.send(text)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlsplit(request.url).path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "rooms":
            return Response("try /rooms/<room>?name=<you> (WebSocket) or /rooms/<room>/stats\n", status=404)
        room = self.env.ROOMS.getByName(parts[1])
        return await room.fetch(request)
