"""URLs of the generation app's own pages (the admin has the rest)."""

from django.urls import path

from generation import views

app_name = "generation"

urlpatterns = [
    path("playground/", views.playground, name="playground"),
    path("playground/answers/<str:token>.json", views.playground_answer, name="playground_answer"),
]
