from workers import Response


def helper(n):
    return 10 // n


async def on_fetch(request, env, ctx):
    if request.url.endswith("/ok"):
        return Response("still serving")
    print("about to divide by zero")
    return Response(str(helper(0)))
