"""The client of bench/websockets: round trips on one connection (p50/p99),
then messages/s with CONNECTIONS connections each sending one message and
waiting for its echo, for SECONDS. Prints one JSON line."""

import asyncio
import json
import statistics
import sys
import time

from websockets.asyncio.client import connect

URL, ROUNDS, CONNECTIONS, SECONDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])


async def round_trips() -> list:
    async with connect(URL, compression=None, max_size=1 << 20) as socket:
        for _ in range(100):  # warm-up
            await socket.send("warm")
            await socket.recv()
        times = []
        for i in range(ROUNDS):
            start = time.perf_counter()
            await socket.send(f"message {i}")
            await socket.recv()
            times.append((time.perf_counter() - start) * 1000)
        return times


async def load() -> int:
    stop = time.perf_counter() + SECONDS
    counts = []

    async def one():
        n = 0
        async with connect(URL, compression=None) as socket:
            while time.perf_counter() < stop:
                await socket.send("x" * 64)
                await socket.recv()
                n += 1
        counts.append(n)

    await asyncio.gather(*(one() for _ in range(CONNECTIONS)))
    return sum(counts)


async def main():
    times = await round_trips()
    times.sort()
    total = await load()
    print(json.dumps({
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(len(times) * 0.99) - 1],
        "messages_per_s": total / SECONDS,
    }))


asyncio.run(main())
