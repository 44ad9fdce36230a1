"""The peer of bench/websockets: an echo server on Python's `websockets`
(asyncio), the usual way to serve WebSockets from native CPython."""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(socket):
    async for message in socket:
        await socket.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=1 << 20, compression=None):
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1])))
