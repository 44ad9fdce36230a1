from js import Response, JSON


def on_fetch(request, env):
    return Response.new(
        JSON.stringify({"greeting": env.GREETING, "count": env.COUNT, "nested": env.NESTED}),
        {"headers": {"content-type": "application/json"}},
    )
