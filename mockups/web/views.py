from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


@login_required
def studio(request: HttpRequest) -> HttpResponse:
    return render(request, "web/studio.html")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the web process answers and reaches its database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
