"""Per-client rate limits applied before any view runs (invite joins, votes); the body caps are in
`evalsite.middleware`.

Rate limits are keyed by the resolved URL name (invite joins, votes) and the
client: votes by the signed-in user (a rater), joins by the IP address (a join switches the browser's
user); counted over a sliding window. Counters live in Django's cache, so every gunicorn worker
(and every web machine sharing the Redis cache) counts the same requests. The
limits come from settings (`RATE_LIMITS`, env `RATE_LIMIT_JOIN` /
`RATE_LIMIT_VOTE` as "COUNT/SECONDS"); a client over its limit gets 429 with
Retry-After. Only POSTs count: opening the welcome page or reading is free.
While the cache is unreachable the limits are not applied (fail open, logged).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


def parse_rate(value: str) -> tuple[int, int]:
    """'30/60' → (30 requests, per 60 seconds); '0/…' or '' disables the limit (count 0)."""
    if not value.strip():
        return (0, 1)
    count, _, seconds = value.partition("/")
    try:
        parsed = (int(count), int(seconds or 60))
    except ValueError as exc:
        raise ValueError(f"A rate limit is written COUNT/SECONDS, e.g. 30/60; got {value!r}.") from exc
    if parsed[0] < 0 or parsed[1] < 1:
        raise ValueError(f"A rate limit needs COUNT >= 0 and SECONDS >= 1; got {value!r}.")
    return parsed


def client_ip(request: HttpRequest) -> str:
    """The client's address; X-Forwarded-For is believed only behind a proxy the settings say is trusted."""
    if getattr(settings, "RATE_LIMIT_TRUST_X_FORWARDED_FOR", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        # The proxy appends the address it saw last: the rightmost entry is the one it vouches for.
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1][:64]
    return str(request.META.get("REMOTE_ADDR", "unknown"))[:64]


def client_key(request: HttpRequest) -> str:
    """Who is counted: a signed-in user (a rater's browser) by their id, anyone else by IP address.

    Keying raters by user keeps a classroom behind one NAT address from sharing one vote budget."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def _too_many(request: HttpRequest, retry_after: int) -> HttpResponse:
    message = f"Slow down: too many requests from you; try again in {retry_after} seconds."
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"error": message}, status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


# Joining by an invite link signs the browser in as a new rater, so a signed-in browser's user changes with
# every join: joins are counted by the client's address alone, whoever is signed in.
ADDRESS_KEYED = frozenset({"comparisons:join"})
# A window is counted in this many slots (a sliding window, not per clock window).
SLOTS = 10


def sliding_window_hit(cache: BaseCache, key: str, *, count: int, seconds: int, now: float) -> int:
    """Count one request in the sliding window of `seconds` ending at `now`; 0 when allowed, else the seconds
    to wait (the refused request is not counted).

    The window is kept as SLOTS counters of seconds/SLOTS each: the requests of the slots wholly inside the
    window count fully, those of the oldest slot in proportion to the part of it still inside (`_in_window`). So a burst
    straddling a clock boundary is counted whole (36 votes in two seconds across a minute boundary are 36
    under "30/60", not 18 + 18), and the count errs at most by the requests of one slot spread unevenly."""
    slot = seconds / SLOTS
    current = int(now // slot)
    prefix = f"{key}:"
    timeout = int(seconds + 2 * slot) + 1
    # add() creates the counter atomically; incr() is atomic on Redis (on the file cache two workers may
    # race on one increment, which only makes the limit slightly lenient).
    if cache.add(prefix + str(current), 1, timeout=timeout):
        used = 1
    else:
        try:
            used = cache.incr(prefix + str(current))
        except ValueError:  # expired between add() and incr()
            cache.add(prefix + str(current), 1, timeout=timeout)
            used = 1
    older = range(current - SLOTS, current)
    fetched = cache.get_many([prefix + str(i) for i in older])
    counts = {i: int(fetched.get(prefix + str(i)) or 0) for i in older}
    counts[current] = int(used)
    if _in_window(counts, slot=slot, seconds=seconds, now=now, at=now) <= count:
        return 0
    with contextlib.suppress(ValueError):  # the counter expired meanwhile: nothing to take back
        cache.decr(prefix + str(current))
    counts[current] -= 1
    # The first whole second at which one more request would be allowed (the count only falls with time).
    low, high = 1, math.ceil(seconds + slot)
    while low < high:
        middle = (low + high) // 2
        if _in_window(counts, slot=slot, seconds=seconds, now=now, at=now + middle) + 1 <= count:
            high = middle
        else:
            low = middle + 1
    return low


def _in_window(counts: dict[int, int], *, slot: float, seconds: int, now: float, at: float) -> float:
    """Requests (all made by `now`) counted in the window (at - seconds, at]: a slot's requests are taken as
    spread evenly over the part of it that had passed by `now`, and count for the share of that part still
    inside the window."""
    start = at - seconds
    total = 0.0
    for i, n in counts.items():
        end = min((i + 1) * slot, now)
        if n and end > i * slot:
            total += n * max(0.0, end - max(i * slot, start)) / (end - i * slot)
    return total


class RateLimitMiddleware:
    """Sliding-window counters per (URL name, client) for the URL names in settings.RATE_LIMITS.

    Placed after AuthenticationMiddleware so a signed-in rater's votes are counted by user, not by address."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._parsed: dict[str, tuple[int, int]] = {}

    def limits(self) -> dict[str, tuple[int, int]]:
        # Read per request (parsing is cached) so tests and the load scenario can change them.
        raw = getattr(settings, "RATE_LIMITS", {}) or {}
        return {name: self._parse(rate) for name, rate in raw.items()}

    def _parse(self, rate: str) -> tuple[int, int]:
        if rate not in self._parsed:
            self._parsed[rate] = parse_rate(rate)
        return self._parsed[rate]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Callable[..., Any], *args: Any) -> HttpResponse | None:
        """Count a POST to a limited URL name; 429 when over the limit. A view hook, so that the URL Django has
        just resolved names the limit: resolving it again here cost every POST a second resolution."""
        if request.method != "POST" or request.resolver_match is None:
            return None
        name = request.resolver_match.view_name
        limit = self.limits().get(name)
        if limit is None or limit[0] <= 0:
            return None
        client = f"ip:{client_ip(request)}" if name in ADDRESS_KEYED else client_key(request)
        try:
            cache = caches[getattr(settings, "RATE_LIMIT_CACHE", "default")]
            retry_after = sliding_window_hit(
                cache, f"ratelimit:{name}:{client}", count=limit[0], seconds=limit[1], now=time.time()
            )
        except Exception:  # noqa: BLE001 - the counters' cache is down
            # Fail open: a Redis outage must not stop a study from collecting votes; the limits come back with
            # the cache.
            logger.warning("Rate-limit cache unavailable; %s not counted.", request.path, exc_info=True)
            retry_after = 0
        return _too_many(request, retry_after) if retry_after else None
