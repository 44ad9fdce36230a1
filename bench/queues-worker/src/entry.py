"""bench/queues: POST /send?n=N&batch=B sends N messages stamped with the
send time (sendBatch of B at a time); the consumer records each message's
latency (send → its queue handler); GET /stats reports them."""

import json
import time

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = request.url
        if "/send" in url:
            query = dict(p.split("=") for p in url.split("?", 1)[1].split("&"))
            n, batch = int(query["n"]), int(query.get("batch", 100))
            sent = 0
            while sent < n:
                size = min(batch, n - sent)
                now = time.time() * 1000
                await self.env.Q.sendBatch([{"body": {"t": now}} for _ in range(size)])
                sent += size
            return Response.json({"sent": sent})
        if "/stats" in url:
            return Response(await self.env.STATS.get("stats") or "{}")
        if "/reset" in url:
            await self.env.STATS.delete("stats")
            return Response("ok")
        return Response("not found", status=404)

    async def queue(self, batch, env=None, ctx=None):
        now = time.time() * 1000
        stats = json.loads(await self.env.STATS.get("stats") or '{"latencies": [], "last": 0}')
        stats["latencies"].extend(round(now - m.body["t"], 2) for m in batch.messages)
        stats["last"] = now
        stats["batches"] = stats.get("batches", 0) + 1
        await self.env.STATS.put("stats", json.dumps(stats))
