"""A Django project served through `workers.wsgi.fetch`.

Django and the project are imported here, at the top level, so the build's
snapshot already holds them: a fresh sandbox does not import Django again.
"""

from workers import WorkerEntrypoint
from workers.wsgi import fetch

from site_app.wsgi import application  # first: it configures Django

from django.urls import get_resolver  # noqa: E402
from site_app import views  # noqa: E402

# Django loads the URLconf, the number formats and the translation catalogs
# on its first request. Doing that here puts them in the snapshot too: a
# fresh sandbox's first response went from 30 ms to 1.5 ms (`taipan bench`).
# This runs at build time, so nothing here may need a request or `env`.
get_resolver().resolve("/")
views.PAGE.render({"site": "", "name": "", "count": 1234567})


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await fetch(application, request, self.env)
