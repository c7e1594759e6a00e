"""`/healthz`, a liveness check for load balancers and docker healthchecks, and a 503 for a lost database.

`/healthz` does one indexed read (a unique-index lookup in the content-type
table) so it proves the database answers, and says nothing else about the site.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        ContentType.objects.filter(app_label="contenttypes", model="contenttype").values_list("pk", flat=True).first()
    except DatabaseError:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


class DatabaseUnavailableMiddleware:
    """Turn a lost database connection during a request into 503 + Retry-After instead of a bare 500.

    The transaction the request was in rolled back with the connection, so repeating the request is safe
    (the vote API is idempotent besides); the client is told so. Other database errors stay 500s.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("Database unavailable during %s %s: %s", request.method, request.path, exception)
        message = "The database was briefly unavailable and nothing was saved; please retry in a moment."
        response: HttpResponse
        if request.path.startswith("/api/"):
            response = JsonResponse({"error": message, "retry": True}, status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = "2"
        return response
