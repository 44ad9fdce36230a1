import asyncio
import time

from workers import Response, WorkerEntrypoint


async def work(n):
    await asyncio.sleep(0.05)
    return n * n


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        started = time.monotonic()
        results = await asyncio.gather(*(work(n) for n in range(4)))
        elapsed = time.monotonic() - started
        # Four 50 ms sleeps run concurrently: well under their 200 ms sum.
        return Response.json({"results": results, "concurrent": 0.04 < elapsed < 0.19})
