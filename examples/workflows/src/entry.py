"""An order as a durable workflow: reserve stock, charge (retried), a
cool-off sleep, wait for a human's approval, ship.

    curl -X POST localhost:8787/orders -d '{"id": "o1", "item": "book"}'
    curl localhost:8787/orders/o1                       # {"status": "waiting", ...}
    curl -X POST localhost:8787/orders/o1/approve -d '{"by": "ana"}'
    curl localhost:8787/orders/o1                       # {"status": "complete", "output": {...}}

Each step's result is stored when it completes, so a restart (or a crash)
resumes after the last completed step; the ledger counts how often each
step's code actually ran.
"""

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class OrderWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        order = event["payload"]

        @step.do("reserve")
        async def reserve():
            await self.count(order["id"], "reserve")
            return {"item": order["item"], "slot": 7}

        @step.do("charge", config={"retries": {"limit": 3, "delay": "1 second", "backoff": "constant"}})
        async def charge(reserve, ctx):
            await self.count(order["id"], "charge")
            if ctx["attempt"] <= order.get("fail_charge", 0):
                raise ConnectionError(f"the card service timed out (attempt {ctx['attempt']})")
            return {"charged": True, "attempt": ctx["attempt"], "item": reserve["item"]}

        receipt = await charge()
        await step.sleep("cool-off", order.get("cool_off_ms", 500))
        approval = await step.wait_for_event("approval", "approved", timeout="1 hour")

        @step.do("ship")
        async def ship():
            await self.count(order["id"], "ship")
            return f"shipped {receipt['item']}"

        return {"receipt": receipt, "approved_by": approval["payload"]["by"], "shipment": await ship()}

    async def count(self, order_id, step_name):
        key = f"{order_id}:{step_name}"
        runs = int(await self.env.LEDGER.get(key) or 0)
        await self.env.LEDGER.put(key, str(runs + 1))


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = request.url.split("/", 3)[3].split("?")[0].split("/")
        if parts == ["orders"] and request.method == "POST":
            order = await request.json()
            instance = await self.env.ORDERS.create(id=order.get("id"), params=order)
            return Response.json({"id": instance.id}, status=201)
        if len(parts) >= 2 and parts[0] == "orders":
            try:
                instance = await self.env.ORDERS.get(parts[1])
            except Exception as exc:
                return Response.json({"error": str(exc)}, status=404)
            if len(parts) == 2 and request.method == "GET":
                status = await instance.status()
                ledger = {s: int(await self.env.LEDGER.get(f"{instance.id}:{s}") or 0) for s in ("reserve", "charge", "ship")}
                return Response.json({**status.to_py(), "ledger": ledger})
            if len(parts) == 3 and request.method == "POST":
                if parts[2] == "approve":
                    await instance.send_event(type="approved", payload=await request.json())
                elif parts[2] in ("pause", "resume", "terminate", "restart"):
                    await getattr(instance, parts[2])()
                else:
                    return Response("not found\n", status=404)
                return Response.json({"ok": True}, status=202)
        return Response("not found\n", status=404)
