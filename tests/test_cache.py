"""The Redis cache backend (evalsite.cache): Django's, with one redis client per pool instead of one per call."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache

pytestmark = pytest.mark.skipif(
    settings.CACHES["default"]["BACKEND"] != "evalsite.cache.RedisCache", reason="needs CACHE_URL=redis://…"
)


def test_the_cache_reuses_one_client_and_still_works_as_djangos():
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    assert cache._cache.get_client(write=True) is client  # type: ignore[attr-defined]
    cache.set("blindeval-test-key", {"votes": 3}, 30)
    assert cache.get("blindeval-test-key") == {"votes": 3}
    assert cache.add("blindeval-test-counter", 1, 30)
    assert cache.incr("blindeval-test-counter") == 2  # the rate limiter's counter
    cache.delete_many(["blindeval-test-key", "blindeval-test-counter"])
    assert cache.get("blindeval-test-key") is None
