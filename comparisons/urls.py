"""Rater pages, the rating API, invites, results and exports."""

from django.contrib.auth.views import LogoutView
from django.urls import path

from comparisons import results_views, views

app_name = "comparisons"

urlpatterns: list = [
    path("", views.home, name="home"),
    path("login/", views.RaterLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(next_page="comparisons:login"), name="logout"),
    # Raters: invite link, the rating page and its end page, the no-JavaScript vote form.
    path("join/<str:token>", views.join, name="join"),
    path("rate/<slug:slug>/", views.rate, name="rate"),
    path("rate/<slug:slug>/done", views.done, name="done"),
    path("rate/<slug:slug>/vote", views.rate_vote_form, name="rate_vote_form"),
    # The rating JSON API (session auth + X-CSRFToken).
    path("api/rate/next", views.api_next, name="api_next"),
    path("api/rate/<str:token>/vote", views.api_vote, name="api_vote"),
    path("api/rate/<str:token>/skip", views.api_skip, name="api_skip"),
    # Results pages and exports (analysts) are added below from comparisons/results_views.py.
    path("campaigns/<slug:slug>/results/", results_views.results, name="results"),
    path("campaigns/<slug:slug>/export/<str:kind>", results_views.export, name="results_export"),
    # Frozen result snapshots: publish (POST), the stable page and its bundle.
    path("campaigns/<slug:slug>/snapshots/publish", results_views.snapshot_publish, name="snapshot_publish"),
    path("campaigns/<slug:slug>/snapshots/<int:number>/", results_views.snapshot, name="snapshot"),
    path(
        "campaigns/<slug:slug>/snapshots/<int:number>/bundle.zip",
        results_views.snapshot_bundle,
        name="snapshot_bundle",
    ),
]
