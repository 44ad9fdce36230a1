"""A job queue: POST /jobs queues work, the queue handler does it in
batches, GET /jobs/<id> shows the result.

    curl -X POST localhost:8787/jobs -d '{"id": "a", "n": 7}'
    curl localhost:8787/jobs/a          # {"status": "done", "result": 49, ...}

A job with "fail_times": N fails its first N deliveries (retried, then the
dead-letter queue once `max_retries` is spent); "work_ms" makes it take that
long.
"""

import asyncio
import json

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3].split("?")[0]
        if path == "" and request.method == "GET":
            return Response.json({"version": self.env.VERSION.id})
        if path == "jobs" and request.method == "POST":
            return await self.submit(request)
        if path.startswith("jobs/") and request.method == "GET":
            job = await self.env.RESULTS.get(path.removeprefix("jobs/"), type="json")
            if job is None:
                return Response.json({"error": "no such job"}, status=404)
            return Response.json(job)
        return Response("not found\n", status=404)

    async def submit(self, request):
        client = request.headers.get("x-client") or "anonymous"
        allowed = await self.env.SUBMIT_LIMIT.limit(key=client)
        if not allowed.success:
            return Response.json({"error": "too many jobs, slow down"}, status=429)
        try:
            jobs = await request.json()
        except ValueError:
            return Response.json({"error": "send a job as JSON"}, status=400)
        jobs = jobs if isinstance(jobs, list) else [jobs]
        if not all(isinstance(j, dict) and isinstance(j.get("id"), str) for j in jobs):
            return Response.json({"error": 'each job needs an "id"'}, status=400)
        for job in jobs:
            await self.env.RESULTS.put(job["id"], json.dumps({"status": "queued"}))
        if len(jobs) == 1:
            await self.env.JOBS.send(jobs[0])
        else:
            await self.env.JOBS.sendBatch([{"body": job} for job in jobs])
        return Response.json({"queued": [j["id"] for j in jobs]}, status=202)

    async def queue(self, batch, env=None, ctx=None):
        for message in batch.messages:
            job = message.body
            if batch.queue == "jobs-dlq":
                await self.record(job, status="dead", attempts=message.attempts)
                message.ack()
            elif message.attempts <= job.get("fail_times", 0):
                await self.record(job, status="retrying", attempts=message.attempts)
                message.retry()
            else:
                await asyncio.sleep(job.get("work_ms", 0) / 1000)
                result = job.get("n", 0) ** 2
                await self.record(job, status="done", attempts=message.attempts, result=result, batch=len(batch.messages))
                message.ack()

    async def record(self, job, **fields):
        await self.env.RESULTS.put(job["id"], json.dumps(fields))
