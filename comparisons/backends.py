"""The authentication backend: Django's ModelBackend, loading a user's Rater row in the same query.

Every rater request reads `request.user` and then `user.rater`. The session store (`comparisons.sessions`) reads
both with the session itself and leaves them here for `get_user`, for this request only; otherwise this backend
reads both in one hand-written statement (`comparisons.rating_queries.user_with_rater`): joining the two saves a
query per request, writing it out saves compiling it on the rating hot path.
Logins, passwords and permissions behave exactly as with ModelBackend.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from comparisons import rating_queries
from comparisons.models import Rater

# The user and rater the session store read with this request's session (a context variable: one per thread).
_signed_in: ContextVar[tuple[Any, Rater | None] | None] = ContextVar("signed_in", default=None)


def remember_signed_in(user: Any, rater: Rater | None) -> None:
    """Called by the session store when it has read the session's user (and rater) with the session."""
    _signed_in.set((user, rater))


def forget_signed_in(**kwargs: Any) -> None:
    """Called when a session is read, and when a request ends (`request_finished`): nothing read for one request
    serves another."""
    _signed_in.set(None)


class RaterModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        User = get_user_model()
        try:
            user_id = User._meta.pk.to_python(user_id)
        except Exception:  # noqa: BLE001 - a malformed id in a session is no user, as in ModelBackend
            return None
        read = _signed_in.get()
        _signed_in.set(None)
        found = read if read is not None and read[0].pk == user_id else rating_queries.user_with_rater(user_id)
        if found is None:
            return None
        user, rater = found
        User.rater.related.set_cached_value(user, rater)  # type: ignore[attr-defined]
        if rater is not None:
            Rater.user.field.set_cached_value(rater, user)
        return user if self.user_can_authenticate(user) else None
