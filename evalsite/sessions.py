"""Sessions read from the shared cache and stored in the database (Django's cached_db), outage-tolerant.

Every rater request reads the session; from Redis that costs a key lookup instead of
a database query. The database stays the record, so a Redis restart logs nobody out,
and while Redis is unreachable sessions are read and written in the database alone
(Django's own cached_db answers 500 there: it writes the copy back to the cache, and
deletes it, without catching the error). Cached copies live at most
`SESSION_CACHE_SECONDS`, so a logout that could not reach Redis ends the session
everywhere within that time even if Redis kept the copy.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.core.cache import caches

from evalsite.cache import cache_call

SESSION_CACHE_SECONDS = 300


class SessionStore(CachedDBStore):
    def _cache_call(self, action: str, *args: Any) -> Any:
        return cache_call(caches[settings.SESSION_CACHE_ALIAS], action, *args, what="Session")[1]

    def load(self) -> dict[str, Any]:
        data = self._cache_call("get", self.cache_key)
        if data is not None:
            return data
        stored = self._get_session_from_db()  # type: ignore[attr-defined]  # Django's DBStore, not in the stubs
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        self._cache_call("set", self.cache_key, data, self._cache_seconds(stored.expire_date))
        return data

    def exists(self, session_key: str) -> bool:
        if not session_key:
            return False
        return bool(self._cache_call("has_key", self.cache_key_prefix + session_key)) or DBStore.exists(
            self, session_key
        )

    def save(self, must_create: bool = False) -> None:
        DBStore.save(self, must_create)
        self._cache_call("set", self.cache_key, self._session, self._cache_seconds())  # type: ignore[attr-defined]

    def delete(self, session_key: str | None = None) -> None:
        DBStore.delete(self, session_key)
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self._cache_call("delete", self.cache_key_prefix + session_key)

    def _cache_seconds(self, expiry: Any = None) -> int:
        return min(self.get_expiry_age(expiry=expiry), SESSION_CACHE_SECONDS)
