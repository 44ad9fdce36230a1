from js import Response


def on_fetch(request):
    return Response.new("sync, request only: " + request.method)
