"""The authentication backend: Django's ModelBackend, loading a user's Rater row in the same query.

Every rater request reads `request.user` and then `user.rater`. This backend reads
both in one hand-written statement (see `comparisons.rows`): joining the two saves a
query per request, writing it out saves compiling it on the rating hot path.
Logins, passwords and permissions behave exactly as with ModelBackend.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import connection

from comparisons import rows
from comparisons.models import Rater


@cache
def _user_sql() -> str:
    User = get_user_model()
    quote = connection.ops.quote_name
    # Identifiers come from the models' metadata; the id is a bound parameter.
    return (
        f"SELECT {rows.columns(User, 'u')}, {rows.columns(Rater, 'r')} "  # noqa: S608
        f"FROM {quote(User._meta.db_table)} u LEFT OUTER JOIN {quote(Rater._meta.db_table)} r "
        f"ON r.{quote(Rater._meta.get_field('user').column)} = u.{quote(User._meta.pk.column)} "
        f"WHERE u.{quote(User._meta.pk.column)} = %s"
    )


class RaterModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        User = get_user_model()
        try:
            user_id = User._meta.pk.to_python(user_id)
        except Exception:  # noqa: BLE001 - a malformed id in a session is no user, as in ModelBackend
            return None
        with connection.cursor() as cursor:
            cursor.execute(_user_sql(), [user_id])
            row = cursor.fetchone()
        if row is None:
            return None
        split = len(User._meta.concrete_fields)
        user = rows.instance_from_row(User, row[:split])
        rater = rows.instance_from_row(Rater, row[split:]) if row[split] is not None else None
        User.rater.related.set_cached_value(user, rater)  # type: ignore[attr-defined]
        if rater is not None:
            Rater.user.field.set_cached_value(rater, user)
        return user if self.user_can_authenticate(user) else None
