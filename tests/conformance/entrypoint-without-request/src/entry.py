from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self):
        return Response("fetch() without a request parameter")
