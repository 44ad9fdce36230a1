"""With snapshot = "full" the module's top level runs at build time, once."""

import random

from workers import Response, WorkerEntrypoint

TABLE = {i: i * i for i in range(1000)}  # built at deploy time, in the snapshot


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response.json({"table": TABLE[31], "random_in_range": 0 <= random.random() < 1})
