"""`/healthz`: a liveness check for load balancers and docker healthchecks.

It does one indexed read (a unique-index lookup in the content-type table) so
it proves the database answers, and says nothing else about the site.
"""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        ContentType.objects.filter(app_label="contenttypes", model="contenttype").values_list("pk", flat=True).first()
    except DatabaseError:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})
