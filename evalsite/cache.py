"""Django's Redis cache, reusing one redis client per connection pool instead of building one per call.

Django's RedisCacheClient makes a new `redis.Redis` for every cache operation; with
redis-py 8 that object costs about 0.1 ms to build (response-callback tables, an event
dispatcher), more than the round trip to Redis. Sessions and rate limits hit the cache on
every rater request, so the client is made once per pool here. A `redis.Redis` over a
connection pool is safe to share between threads.

`cache_call` is how cached analyses use a cache they can do without; `cached` is the
look-up-else-compute-and-store that the cached analyses, figures, routing plans and audits share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]  # Django internals, not in the stubs
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), redis.Redis(connection_pool=pool))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient


def cache_call(cache: BaseCache, action: str, *args: Any, what: str) -> tuple[bool, Any]:
    """`cache.<action>(*args)` for a cache that is an optimisation: (True, result), or (False, None) and a
    warning naming `what` when the cache cannot be reached, so the caller carries on without it."""
    try:
        return True, getattr(cache, action)(*args)
    except Exception:  # noqa: BLE001 - an unreachable cache must not cost the request
        logger.warning("%s cache unavailable (%s); carrying on without it.", what, action, exc_info=True)
        return False, None


def cached(cache: BaseCache, key: str, compute: Callable[[], T], seconds: int, *, what: str) -> T:
    """The value stored under ``key``, else ``compute()``, stored for ``seconds``. A cache that cannot be reached
    costs the computation, not the request, and is not asked twice (its first failure is enough). ``compute``
    must not return None, which reads as "not stored": wrap a result that may be None."""
    reachable, stored = cache_call(cache, "get", key, what=what)
    if stored is not None:
        return stored
    value = compute()
    if reachable:
        cache_call(cache, "set", key, value, seconds, what=what)
    return value
