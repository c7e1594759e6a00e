"""Access control over every URL of the project, for every role.

The URL list is not written by hand: it is walked out of Django's resolver, so
a URL added later without a row in ACCESS fails `test_every_url_is_classified`
until someone decides who may reach it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from comparisons import services
from comparisons.models import Assignment, Campaign, Comparison, Rater, Vote
from generation.models import EvalSet, GenerationChunk, GenerationRun, ModelEntry, Prompt, Response
from tests.comparisons.factories import MODEL_NAMES, build_campaign, invite_rater

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "rater", "other_rater", "analyst", "admin")


@dataclass(frozen=True)
class Route:
    pattern: str  # the full route, converters included
    name: str  # namespaced URL name ("admin:index"), or "<unnamed>"
    methods: tuple[str, ...]


def walk(resolver: URLResolver | None = None, prefix: str = "", namespace: str = "") -> list[Route]:
    resolver = resolver or get_resolver()
    routes: list[Route] = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            routes.extend(walk(entry, prefix + str(entry.pattern), inner))
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if entry.name and namespace else (entry.name or f"{namespace}:<unnamed>")
            methods = ("POST",) if name in POST_ONLY else ("GET",)
            routes.append(Route(prefix + str(entry.pattern), name, methods))
    return routes


# Endpoints that only change state: probed with POST (a GET would answer 405 for everyone).
POST_ONLY = {
    "comparisons:rate_vote_form",
    "comparisons:api_vote",
    "comparisons:api_skip",
    "comparisons:snapshot_publish",
    "comparisons:logout",
    "admin:logout",
}

A, D, ANY = "allow", "deny", "any"
# Who may reach what, by URL name (fnmatch patterns, first match wins). "allow" = a 2xx/3xx answer that is
# not a bounce to a login page; "deny" = 401/403/404, or a redirect to a login page.
ACCESS: list[tuple[str, dict[str, str]]] = [
    ("healthz", dict.fromkeys(ROLES, A)),
    ("admin:login", dict.fromkeys(ROLES, A)),  # the form itself (non-staff users are told to sign in as staff)
    ("comparisons:login", dict.fromkeys(ROLES, A)),
    # Logging out is harmless for anyone (it ends one's own session and bounces to a login page).
    ("comparisons:logout", dict.fromkeys(ROLES, ANY)),
    ("admin:logout", dict.fromkeys(ROLES, ANY)),
    # Sends each role to its own place; anonymous users to the login page.
    ("comparisons:home", {"anonymous": D, "rater": A, "other_rater": A, "analyst": A, "admin": A}),
    ("comparisons:join", dict.fromkeys(ROLES, A)),  # the welcome page of an invite, for whoever has the link
    (
        "comparisons:rate*",
        {"anonymous": D, "rater": A, "other_rater": D, "analyst": D, "admin": D},
    ),
    ("comparisons:done", {"anonymous": D, "rater": A, "other_rater": D, "analyst": D, "admin": D}),
    ("comparisons:api_*", {"anonymous": D, "rater": A, "other_rater": D, "analyst": D, "admin": D}),
    ("comparisons:results*", {"anonymous": D, "rater": D, "other_rater": D, "analyst": A, "admin": A}),
    # Published snapshots (page, bundle, publishing) are results too: they name the models.
    ("comparisons:snapshot*", {"anonymous": D, "rater": D, "other_rater": D, "analyst": A, "admin": A}),
    # The admin: staff only. Unknown admin URLs answer 404 even to staff (the catch-all). Assignments, votes,
    # comparisons and generation chunks are read-only there (only the services write them), autocomplete
    # answers 403 without a registered field, and no model has a public page (view_on_site: 404).
    ("admin:comparisons_comparison_add", dict.fromkeys(ROLES, D)),
    ("admin:comparisons_assignment_add", dict.fromkeys(ROLES, D)),
    ("admin:comparisons_vote_add", dict.fromkeys(ROLES, D)),
    ("admin:comparisons_comparison_delete", dict.fromkeys(ROLES, D)),
    ("admin:comparisons_assignment_delete", dict.fromkeys(ROLES, D)),
    ("admin:comparisons_vote_delete", dict.fromkeys(ROLES, D)),
    ("admin:generation_generationchunk_add", dict.fromkeys(ROLES, D)),
    ("admin:generation_response_add", dict.fromkeys(ROLES, D)),  # responses come from runs and imports
    ("admin:autocomplete", dict.fromkeys(ROLES, D)),
    ("admin:view_on_site", dict.fromkeys(ROLES, D)),
    ("admin:<unnamed>:catch_all", {"anonymous": D, "rater": D, "other_rater": D, "analyst": D, "admin": D}),
    # The playground is staff only; an answer's JSON needs a playground token, so staff get 404 for the
    # world's assignment token (tests/generation/test_playground.py reads real answers).
    ("generation:playground", {"anonymous": D, "rater": D, "other_rater": D, "analyst": D, "admin": A}),
    ("generation:playground_answer", {"anonymous": D, "rater": D, "other_rater": D, "analyst": D, "admin": ANY}),
    ("admin:*", {"anonymous": D, "rater": D, "other_rater": D, "analyst": D, "admin": A}),
]


def classify(name: str) -> dict[str, str] | None:
    for pattern, expected in ACCESS:
        if fnmatch.fnmatchcase(name, pattern):
            return expected
    return None


def route_key(route: Route) -> str:
    if route.name == "admin:<unnamed>" and "(?P<url>" in route.pattern:
        return "admin:<unnamed>:catch_all"
    return route.name


# ---------------------------------------------------------------- the world the matrix runs in


@pytest.fixture
def world():
    campaign = build_campaign(slug="alpha", n_prompts=4, k=2)
    other = build_campaign(slug="beta", n_prompts=3, k=2, model_names=["ibis-9", "tapir-2"])
    rater = invite_rater(campaign)
    voted = services.assignment_next(rater=rater, campaign=campaign)
    services.vote_cast(rater=rater, token=voted.token, choice="A")
    services.snapshot_publish(campaign=campaign)  # snapshot 1, for the snapshot page and bundle
    live = services.assignment_next(rater=rater, campaign=campaign)
    other_rater = invite_rater(other)
    services.assignment_next(rater=other_rater, campaign=other)
    User = get_user_model()
    analyst = User.objects.create_user(username="ann-analyst", password="pw-123456789")
    services.user_make_analyst(user=analyst)
    admin = User.objects.create_superuser(username="root-admin", password="pw-123456789", email="a@example.org")
    run = GenerationRun.objects.create(model=ModelEntry.objects.get(name=MODEL_NAMES[0]), eval_set=campaign.eval_set)
    chunk = GenerationChunk.objects.create(run=run, index=0, first_position=0, last_position=1)
    objects = {
        "auth_group": services.analyst_group(),
        "auth_user": analyst,
        "generation_evalset": campaign.eval_set,
        "generation_prompt": Prompt.objects.filter(eval_set=campaign.eval_set).first(),
        "generation_modelentry": ModelEntry.objects.get(name=MODEL_NAMES[0]),
        "generation_generationrun": run,
        "generation_generationchunk": chunk,
        "generation_response": Response.objects.filter(model__name=MODEL_NAMES[0]).first(),
        "comparisons_campaign": campaign,
        "comparisons_rater": rater,
        "comparisons_comparison": Comparison.objects.filter(campaign=campaign).first(),
        "comparisons_assignment": live,
        "comparisons_vote": Vote.objects.get(assignment=voted),
    }
    users = {"rater": rater.user, "other_rater": other_rater.user, "analyst": analyst, "admin": admin}
    return {"campaign": campaign, "live": live, "objects": objects, "users": users}


def concrete_url(route: Route, world) -> str:
    """Fill the route's converters with real values from the world (the rater's campaign and tokens)."""
    objects = world["objects"]
    pattern = route.pattern
    if "(?P<url>" in pattern:
        return "/admin/no-such-page/"
    if "(?P<app_label>" in pattern:
        return "/admin/comparisons/"
    if route.name == "admin:view_on_site":
        vote = objects["comparisons_campaign"]
        ct = ContentType.objects.get_for_model(vote)
        return f"/admin/r/{ct.pk}/{vote.pk}/"
    model_key = None
    match = re.match(r"admin/(\w+)/(\w+)/", pattern)
    if match:
        model_key = f"{match.group(1)}_{match.group(2)}"
    values = {
        "slug": world["campaign"].slug,
        "kind": "votes",
        "number": "1",
        "object_id": str(objects[model_key].pk) if model_key in objects else "1",
        "id": str(objects["auth_user"].pk),
        "pk": str(world["campaign"].pk),
    }
    if route.name == "comparisons:join":
        values["token"] = world["campaign"].invite_token
    else:
        values["token"] = world["live"].token

    def fill(m: re.Match) -> str:
        return values[m.group(2)]

    query = f"?campaign={world['campaign'].slug}" if route.name == "comparisons:api_next" else ""
    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, pattern) + query


def client_for(role: str, world) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


def outcome(response) -> str:
    """allow: the request got past access control (a 2xx/3xx, or the view's own 400/409/410 about the input)."""
    location = response.get("Location", "")
    if response.status_code in (401, 403, 404):
        return D
    if response.status_code in (400, 409, 410):
        return A
    if response.status_code in (301, 302) and "login" in location:
        return D
    if 200 <= response.status_code < 400:
        return A
    return f"status {response.status_code}"


# ---------------------------------------------------------------- tests


def test_every_url_is_classified():
    unclassified = sorted({route_key(r) for r in walk() if classify(route_key(r)) is None})
    assert not unclassified, f"URLs missing from the access table in {__file__}: {unclassified}"
    assert len(walk()) > 80  # the admin's URLs are in the walk


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(role, world):
    leaked_names = [*MODEL_NAMES, "ibis-9", "tapir-2"]
    failures = []
    checked = 0
    for route in walk():
        expected = classify(route_key(route))[role]  # type: ignore[index]
        url = concrete_url(route, world)
        client = client_for(role, world)
        if "POST" in route.methods:
            response = client.post(url, data='{"choice": "A"}', content_type="application/json")
        else:
            response = client.get(url)
        checked += 1
        got = outcome(response)
        if got != expected and not (expected == ANY and got in (A, D)):
            failures.append(f"{route.name} {url}: expected {expected}, got {got} ({response.status_code})")
        if role in ("rater", "other_rater", "anonymous") and not getattr(response, "streaming", False):
            # What a rater (or a stranger) can reach never names a model, in the body or a header.
            text = response.content.decode("utf-8", "replace") + str(dict(response.headers))
            for name in leaked_names:
                if name in text:
                    failures.append(f"{route.name} {url}: answer to {role} names model {name!r}")
    assert checked == len(walk())
    assert not failures, "\n".join(failures)


def test_admin_writes_refused_to_non_staff(world):
    """A POST to an admin delete page by every non-staff role changes nothing."""
    campaign = world["campaign"]
    for role in ("anonymous", "rater", "other_rater", "analyst"):
        client = client_for(role, world)
        response = client.post(f"/admin/comparisons/campaign/{campaign.pk}/delete/", {"post": "yes"})
        assert outcome(response) == D, role
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_other_campaigns_rater_cannot_touch_a_token(world):
    live = world["live"]
    client = client_for("other_rater", world)
    for action in ("vote", "skip"):
        response = client.post(f"/api/rate/{live.token}/{action}", {"choice": "A"}, content_type="application/json")
        assert response.status_code == 404
    live.refresh_from_db()
    assert live.status == Assignment.Status.LEASED and not Vote.objects.filter(assignment=live).exists()


def test_csrf_enforced_on_every_state_change(world):
    """Every URL refuses a POST without a CSRF token for every role, before the view runs: nothing changes."""
    counts_before = _counts()
    refused = 0
    for role in ROLES:
        for route in walk():
            url = concrete_url(route, world)
            client = Client(enforce_csrf_checks=True)
            if role != "anonymous":
                client.force_login(world["users"][role])
            if route.name == "admin:login" or route.name == "comparisons:login":
                # Login forms are CSRF-protected too (login CSRF).
                response = client.post(url, {"username": "root-admin", "password": "pw-123456789"})
            else:
                response = client.post(url, data='{"choice": "A"}', content_type="application/json")
            assert response.status_code == 403, f"{role} POST {url} without CSRF: {response.status_code}"
            refused += 1
    assert refused == len(ROLES) * len(walk())
    assert _counts() == counts_before


def test_csrf_token_makes_the_same_vote_work(world):
    """The CSRF check is the only thing that failed above: with the header, the rater's vote is recorded."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["users"]["rater"])
    client.get(f"/rate/{world['campaign'].slug}/")
    token = client.cookies["csrftoken"].value
    live = world["live"]
    response = client.post(
        f"/api/rate/{live.token}/vote",
        '{"choice": "B"}',
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 201


def _counts() -> dict[str, int]:
    models = [Campaign, Comparison, Rater, Assignment, Vote, EvalSet, Prompt, ModelEntry, Response, GenerationRun]
    counts = {m.__name__: m.objects.count() for m in models}
    counts["users"] = get_user_model().objects.count()
    counts["leased"] = Assignment.objects.filter(status=Assignment.Status.LEASED).count()
    return counts
