import asyncio

from workers import Response

done = []


async def record(tag):
    await asyncio.sleep(0.01)
    done.append(tag)


async def on_fetch(request, env, ctx):
    ctx.waitUntil(record(request.url))
    ctx.passThroughOnException()
    return Response.json({"finished_before_this_request": len(done)})
