"""URL map: the admin, then each app's pages and API."""

from django.contrib import admin
from django.urls import include, path

from evalsite.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("generation.urls")),
    path("", include("comparisons.urls")),
]
