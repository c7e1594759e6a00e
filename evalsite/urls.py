"""URL map: the admin, then each app's pages and API."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("comparisons.urls")),
]
