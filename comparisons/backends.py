"""The authentication backend: Django's ModelBackend, loading a user's Rater row in the same query.

Every rater request reads `request.user` and then `user.rater`. This backend reads
both in one hand-written statement (`comparisons.rating_queries.user_with_rater`): joining the two saves a
query per request, writing it out saves compiling it on the rating hot path.
Logins, passwords and permissions behave exactly as with ModelBackend.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from comparisons import rating_queries
from comparisons.models import Rater


class RaterModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        User = get_user_model()
        try:
            user_id = User._meta.pk.to_python(user_id)
        except Exception:  # noqa: BLE001 - a malformed id in a session is no user, as in ModelBackend
            return None
        found = rating_queries.user_with_rater(user_id)
        if found is None:
            return None
        user, rater = found
        User.rater.related.set_cached_value(user, rater)  # type: ignore[attr-defined]
        if rater is not None:
            Rater.user.field.set_cached_value(rater, user)
        return user if self.user_can_authenticate(user) else None
