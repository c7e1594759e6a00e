"""Sessions in the database with their signed-in user as a column (`models.Session`): a request reads its
session, its user and the user's Rater in one statement.

Every request of a signed-in rater reads the session, then the user it names (`auth.get_user`), then the rater.
Read from Redis then PostgreSQL, that was two round trips and most of a request's sign-in cost; here `load` reads
the three in one (`rating_queries.session_with_user`) and hands the user and rater read with it to the
authentication backend (`backends.RaterModelBackend.get_user`), which uses them only for the user id the
session names, in the same request. Sessions live in the database alone, so a Redis outage signs nobody out and
a logout ends the session everywhere at once.

The class keeps Django's name, SessionStore: the session data is signed with a salt made of it, so the rows
copied from Django's own table (migration 0016) read the same here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore as DBStore
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
        data: dict[str, Any] = self.decode(found.session_data)
        if found.user is not None:
            backends.remember_signed_in(found.user, found.rater)
        return data


def _signed_in_user_id(data: dict[str, Any]) -> Any:
    try:
        return get_user_model()._meta.pk.to_python(data[SESSION_KEY])
    except Exception:  # noqa: BLE001 - no user signed in, or an id that is none (auth.get_user then finds nobody)
        return None
