"""Django's Redis cache, reusing one redis client per connection pool instead of building one per call.

Django's RedisCacheClient makes a new `redis.Redis` for every cache operation; with
redis-py 8 that object costs about 0.1 ms to build (response-callback tables, an event
dispatcher), more than the round trip to Redis. Sessions and rate limits hit the cache on
every rater request, so the client is made once per pool here. A `redis.Redis` over a
connection pool is safe to share between threads.
"""

from __future__ import annotations

from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient


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
