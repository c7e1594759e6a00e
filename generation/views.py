"""The playground: staff try any ready model on an instruction (and input), one model or two side by side.

Answers come from a worker (the generation queue) with the model's own template
and decoding settings; the page polls for them. They are PlaygroundAnswer rows,
never evaluation Responses, so nothing here reaches raters or results.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponseForbidden, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from generation import selectors, services
from generation.errors import InputError


def staff_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Active staff only: others get 403 (JSON for the answer endpoint), anonymous users the admin login."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff:
            return view(request, *args, **kwargs)
        if request.path.endswith(".json"):
            return JsonResponse({"error": "Staff only."}, status=403 if user.is_authenticated else 401)
        if user.is_authenticated:
            return HttpResponseForbidden("The playground is for admins (staff) only.")
        return redirect(f"{reverse('admin:login')}?next={request.path}")

    return wrapper


@staff_required
@require_http_methods(["GET", "POST"])
def playground(request: HttpRequest) -> HttpResponseBase:
    models = list(services.playground_models().order_by("name"))
    error = ""
    form = {"instruction": "", "input": "", "model_a": "", "model_b": ""}
    if request.method == "POST":
        form = {key: request.POST.get(key, "") for key in form}
        try:
            ids = [int(form["model_a"])] + ([int(form["model_b"])] if form["model_b"] else [])
        except ValueError:
            ids = []
        try:
            answers = services.playground_ask(
                model_ids=ids, instruction=form["instruction"], input_text=form["input"], user_id=request.user.pk
            )
        except InputError as exc:
            error = str(exc)
        else:
            query = "&".join(f"a={a.token}" for a in answers)
            return redirect(f"{reverse('generation:playground')}?{query}")
    answers = selectors.playground_answers(tokens=request.GET.getlist("a"))
    if answers and request.method == "GET":
        first = answers[0]
        form = {
            "instruction": first.instruction,
            "input": first.input,
            "model_a": str(first.model_id),
            "model_b": str(answers[1].model_id) if len(answers) > 1 else "",
        }
    context = {
        **admin.site.each_context(request),
        "title": "Playground",
        "models": models,
        "form": form,
        "error": error,
        "answers": [selectors.playground_answer_view(a) for a in answers],
    }
    return render(request, "generation/playground.html", context, status=400 if error else 200)


@staff_required
@require_GET
def playground_answer(request: HttpRequest, token: str) -> JsonResponse:
    answers = selectors.playground_answers(tokens=[token])
    if not answers:
        return JsonResponse({"error": "No such answer."}, status=404)
    return JsonResponse(selectors.playground_answer_view(answers[0]))
