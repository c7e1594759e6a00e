"""gunicorn settings that every start of the web process shares (gunicorn reads ./gunicorn.conf.py itself).

Workers, threads and the bind address stay on the command line (docker-compose.yml, the benchmarks)."""

from __future__ import annotations

import gc
from typing import Any

# Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections over them. On one
# shared socket, whichever worker woke first accepted a burst of keep-alive connections and kept them: 50 opened
# at once landed 42, 4, 2 and 2 on four workers, and the one with 42 could use a single core (its interpreter
# lock), which halved the load benchmark's bare throughput in some runs. Per-worker sockets: 13, 13, 13, 11.
reuse_port = True


def post_worker_init(worker: Any) -> None:
    """Load the whole site, then move every object alive so far out of the garbage collector's reach.

    A worker holds about 250,000 objects once Django, pandas, scipy and matplotlib are loaded, none of which is
    ever freed; a full collection walked them all (120-280 ms in the load benchmark, every worker thread waiting
    on it) whenever enough new objects had survived. Frozen, they are skipped (Instagram's `gc.freeze`)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports the URL modules and views now, not on a first request
    gc.collect()
    gc.freeze()
