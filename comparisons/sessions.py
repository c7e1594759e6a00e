"""Sessions in the database with their signed-in user as a column (`models.Session`): a request reads its
session, its user and the user's Rater in one statement.

Every request of a signed-in rater reads the session, then the user it names (`auth.get_user`), then the rater.
Read from Redis then PostgreSQL, that was two round trips and most of a request's sign-in cost; here `load` reads
the three in one (`rating_queries.session_with_user`) and hands the user and rater read with it to the
authentication backend (`backends.RaterModelBackend.get_user`), which uses them only for the user id the
session names, in the same request. Sessions live in the database alone, so a Redis outage signs nobody out and
a logout ends the session everywhere at once. A vote's request (a view marked `reads_vote_target`) has the same
statement read the assignment it votes on (`VoteTargetWithSessionMiddleware`). Expired sessions stay rows until
`manage.py clearsessions` deletes them.

The class keeps Django's name, SessionStore: the session data is signed with a salt made of it, so the rows
copied from Django's own table (migration 0016) read the same here.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from comparisons import backends, rating_queries
from comparisons.models import Session


class SessionStore(DBStore):
    @classmethod
    def get_model_class(cls) -> type[Session]:
        return Session

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        session = super().create_model_instance(data)
        assert isinstance(session, Session)
        session.user_id = _signed_in_user_id(data)
        return session

    def load(self) -> dict[str, Any]:
        backends.forget_signed_in()
        found = rating_queries.session_with_user(self.session_key, timezone.now()) if self.session_key else None
        if found is None:
            self._session_key = None  # as Django's store: a key that names no live session is not reused
            return {}
        data = self.decode(found.session_data)
        if found.user is not None:
            backends.remember_signed_in(found.user, found.rater)
        return data

    def decode(self, session_data: bytes | str) -> dict[str, Any]:
        # Checking the signature of a session's data was 3% of gunicorn's time per vote: data checked before (the
        # same text, signed with the same key and salt) is read from the JSON it holds, into a new dict each time
        # (whatever a request changes in it stays its own). Data that fails the check is never remembered: it is
        # refused, and logged, by Django's decode every time.
        if isinstance(session_data, str):
            with contextlib.suppress(Exception):
                parsed: dict[str, Any] = json.loads(_verified_json(session_data, self.key_salt, self.serializer))
                return parsed
        return super().decode(session_data)  # type: ignore[no-any-return]


# The sessions of the raters active now: a few thousand at most, each a few hundred bytes.
@functools.lru_cache(maxsize=4096)
def _verified_json(session_data: str, salt: str, serializer: type) -> str:
    return json.dumps(signing.loads(session_data, salt=salt, serializer=serializer))


def _signed_in_user_id(data: dict[str, Any]) -> Any:
    try:
        return get_user_model()._meta.pk.to_python(data[SESSION_KEY])
    except Exception:  # noqa: BLE001 - no user signed in, or an id that is none (auth.get_user then finds nobody)
        return None


View = TypeVar("View", bound=Callable[..., Any])


def reads_vote_target(argument: str) -> Callable[[View], View]:
    """Mark a view that votes on the assignment its URL names by `argument` (its token): its request's session
    statement reads that assignment too (`VoteTargetWithSessionMiddleware`)."""

    def mark(view: View) -> View:
        view.vote_token_argument = argument  # type: ignore[attr-defined]
        return view

    return mark


class VoteTargetWithSessionMiddleware:
    """For a view marked with `reads_vote_target`, the session is read with the vote's assignment, in one round
    trip (`rating_queries.vote_target_with_session`). The session is read when the user first is: this comes
    before any middleware whose `process_view` may read the user (the rate limits count votes by user)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        finally:
            rating_queries.vote_target_with_session(None)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        argument = getattr(view, "vote_token_argument", None)
        if argument is not None and isinstance(kwargs.get(argument), str):
            rating_queries.vote_target_with_session(kwargs[argument])
        return None
