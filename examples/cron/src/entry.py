"""A cron worker: every minute `scheduled` records when it ran in KV; GET /
shows the last run. Try it now with `taipan dev --test-scheduled` and
`curl "http://127.0.0.1:8787/__scheduled?cron=*+*+*+*+*"`."""

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def scheduled(self, controller, env, ctx):
        runs = int(await env.STATE.get("runs") or 0) + 1
        await env.STATE.put("runs", str(runs))
        await env.STATE.put("last", f"{controller.cron} at {int(controller.scheduledTime)}")

    async def fetch(self, request):
        last = await self.env.STATE.get("last")
        runs = await self.env.STATE.get("runs") or "0"
        return Response(f"runs: {runs}\nlast: {last}\n")
