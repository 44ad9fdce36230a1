from workers import Response


def dispatch(path: str, greeting: str) -> Response:
    if path == "":
        return Response(greeting)
    return Response(f"no route for /{path}", status=404)
