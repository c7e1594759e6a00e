"""Request guards run before any view: NUL characters (400), bodies sent without a length (411) and oversized
bodies (413).

The per-client rate limits live in `evalsite.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve


class NulCharacterMiddleware:
    """Refuse URLs, query parameters and form fields carrying NUL characters (400): PostgreSQL text cannot
    hold them, so a lookup or an insert would fail inside the database instead of answering clearly."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        params = list(request.GET.lists())
        # Urlencoded forms only: parsing a multipart body here would pick its upload handlers too early.
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            params += request.POST.lists()
        if "\x00" in request.path_info or any("\x00" in v for _, values in params for v in values):
            return _refuse(
                request.path_info.startswith("/api/"),
                "NUL characters are not allowed in URLs, parameters or form fields.",
                400,
            )
        return self.get_response(request)


# The one URL that may receive a large body (a checkpoint archive), and only from signed-in staff.
LARGE_BODY_URL_NAMES = frozenset({"admin:generation_modelentry_add"})


class BodySizeLimitMiddleware:
    """Refuse oversized request bodies from their Content-Length, before anything reads them (413).

    Placed after AuthenticationMiddleware (which reads no body) and before every middleware or view that
    does (the CSRF check parses a form body in its process_view, the NUL check reads form fields), so a
    refused body is never read or spooled to disk. JSON API bodies: settings.API_MAX_BODY_BYTES. The
    checkpoint upload URL, for signed-in active staff only: settings.CHECKPOINT_UPLOAD_MAX_BYTES. Everything
    else: settings.REQUEST_MAX_BODY_BYTES. A body sent without a Content-Length (chunked) is refused with 411:
    Django's WSGI request reads no further than the Content-Length, so a length must be declared.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = request.path_info.startswith("/api/")
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return _refuse(api, "Send the request body with a Content-Length header, not chunked.", 411)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refuse(api, "The Content-Length header is not a number.", 400)
        if length <= 0:
            return self.get_response(request)
        if api:
            limit, what = int(getattr(settings, "API_MAX_BODY_BYTES", 64 * 1024)), "this API accepts"
        elif self._may_upload(request):
            limit, what = int(getattr(settings, "CHECKPOINT_UPLOAD_MAX_BYTES", 2**40)), "an upload may have"
        else:
            limit, what = int(getattr(settings, "REQUEST_MAX_BODY_BYTES", 3 * 1024 * 1024)), "this page accepts"
        if length > limit:
            return _refuse(api, f"The request body is {length} bytes; {what} at most {limit} bytes.", 413)
        return self.get_response(request)

    @staticmethod
    def _may_upload(request: HttpRequest) -> bool:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        user = getattr(request, "user", None)
        staff = user is not None and user.is_authenticated and user.is_active and user.is_staff
        return match.view_name in LARGE_BODY_URL_NAMES and staff


def _refuse(api: bool, message: str, status: int) -> HttpResponse:
    if api:
        return JsonResponse({"error": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
