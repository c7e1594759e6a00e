"""Sessions read from the shared cache and stored in the database (Django's cached_db), outage-tolerant.

Every rater request reads the session; from Redis that costs a key lookup instead of
a database query. The database stays the record, so a Redis restart logs nobody out;
while Redis is unreachable, sessions are read from the database alone (Django's own
cached_db would answer 500 there, because it writes the copy back to the cache
without catching the error).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache import caches

logger = logging.getLogger(__name__)


class SessionStore(CachedDBStore):
    def load(self) -> dict[str, Any]:
        cache = caches[settings.SESSION_CACHE_ALIAS]
        try:
            data = cache.get(self.cache_key)
        except Exception:  # noqa: BLE001 - an unreachable cache must not cost the request
            logger.warning("Session cache unavailable; reading the session from the database.", exc_info=True)
            data = None
        if data is not None:
            return data
        stored = self._get_session_from_db()  # type: ignore[attr-defined]  # Django's DBStore, not in the stubs
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        try:
            cache.set(self.cache_key, data, self.get_expiry_age(expiry=stored.expire_date))
        except Exception:  # noqa: BLE001
            logger.warning("Session cache unavailable; the session was not cached.", exc_info=True)
        return data
