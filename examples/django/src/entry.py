"""A Django project served through `workers.wsgi.fetch`.

Django and the project are imported here, at the top level, so the build's
snapshot already holds them: a fresh sandbox does not import Django again.
"""

from workers import WorkerEntrypoint
from workers.wsgi import fetch

from site_app.wsgi import application


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await fetch(application, request, self.env)
