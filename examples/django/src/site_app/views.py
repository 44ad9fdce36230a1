import json

from django.http import HttpResponse, JsonResponse
from django.template import engines
from django.views.decorators.csrf import csrf_exempt

PAGE = engines["django"].from_string(
    "{% load humanize %}<h1>{{ site }}</h1><p>Hello, {{ name }}! You are visitor {{ count|intcomma }}.</p>"
)


def home(request):
    env = request.environ["workers.env"]
    html = PAGE.render({"site": env.SITE_NAME, "name": request.GET.get("name", "world"), "count": 1234567})
    return HttpResponse(html)


@csrf_exempt
def echo(request):
    return JsonResponse({"method": request.method, "body": json.loads(request.body or b"null")})
