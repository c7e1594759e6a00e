"""Rater pages, the rating API, invites, results and exports."""

from django.urls import path

app_name = "comparisons"

urlpatterns: list = []
