"""The worker the packages tests drive: third-party packages from the build's
snapshot, HTTP clients through the host, and a submodule imported late."""

import httpx
import jinja2
import requests
import urllib3
import yaml
from workers import Response, WorkerEntrypoint

TEMPLATE = jinja2.Environment(autoescape=True).from_string("<p>{{ name }}</p>")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(request.url)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/render":
            import markupsafe

            return Response.json(
                {
                    "html": TEMPLATE.render(name="<b>x</b>"),
                    "yaml": yaml.safe_dump({"a": [1, 2]}),
                    "markupsafe": markupsafe.__version__ if hasattr(markupsafe, "__version__") else "?",
                    "libyaml": yaml.__with_libyaml__,
                }
            )
        if url.path == "/late":
            # A submodule nobody imported at build time: read from the mount now.
            import jinja2.sandbox

            env = jinja2.sandbox.SandboxedEnvironment()
            return Response(env.from_string("{{ 6 * 7 }}").render())
        if url.path == "/clients":
            target = q["url"]
            results = {
                "requests": requests.post(target, data=b"r", timeout=10).text,
                "requests_status": requests.get(target).status_code,
                "urllib3": urllib3.PoolManager().request("PUT", target, body=b"u").data.decode(),
                "httpx": httpx.post(target, content=b"h").text,
            }
            async with httpx.AsyncClient() as client:
                results["httpx_async"] = (await client.patch(target, content=b"a")).text
            return Response.json(results)
        if url.path == "/refused":
            errors = {}
            for name, call in (
                ("requests", lambda: requests.get(q["url"], timeout=5)),
                ("httpx", lambda: httpx.get(q["url"])),
            ):
                try:
                    call()
                    errors[name] = None
                except Exception as exc:  # noqa: BLE001
                    errors[name] = f"{type(exc).__name__}: {exc}"
            return Response.json(errors)
        return Response("not found", status=404)
