"""The authentication backend: Django's ModelBackend, loading a user's Rater row in the same query.

Every rater request reads `request.user` and then `user.rater`; joining the two
saves one query per request on the rating hot path. Logins, passwords and
permissions behave exactly as with ModelBackend.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class RaterModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        User = get_user_model()
        try:
            user = User._default_manager.select_related("rater").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
