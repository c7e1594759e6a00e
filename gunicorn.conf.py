"""gunicorn settings that every start of the web process shares (gunicorn reads ./gunicorn.conf.py itself).

Workers, threads and the bind address stay on the command line (docker-compose.yml, the benchmarks)."""

from __future__ import annotations

import gc
import os
import socket
from typing import Any

# Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections over them. On one
# shared socket, whichever worker woke first accepted a burst of keep-alive connections and kept them: 50 opened
# at once landed 42, 4, 2 and 2 on four workers, and the one with 42 could use a single core (its interpreter
# lock), which halved the load benchmark's bare throughput in some runs. Per-worker sockets: 13, 13, 13, 11.
reuse_port = True


def on_starting(server: Any) -> None:
    """Refuse to start on an address another server listens on (see `reuse_port`).

    With SO_REUSEPORT a second gunicorn started by the same user on the same port would bind without an error
    and silently take half the connections. Not checked on a binary upgrade (USR2), whose new master starts
    while the old one's workers still listen, nor for sockets handed over by systemd."""
    if server.master_pid or os.environ.get("LISTEN_FDS"):
        return
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue  # a Unix socket: binding an existing path fails on its own
        host, port = address
        family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore connections closing
            try:
                probe.bind(target)
            except OSError as error:
                raise SystemExit(
                    f"gunicorn: cannot listen on {host}:{port}: {error.strerror}. Another server already listens "
                    "there; stop it or choose another address with --bind."
                ) from error


def post_worker_init(worker: Any) -> None:
    """Load the whole site, then move every object alive so far out of the garbage collector's reach.

    A worker holds about 250,000 objects once Django, pandas, scipy and matplotlib are loaded, none of which is
    ever freed; a full collection walked them all (120-280 ms in the load benchmark, every worker thread waiting
    on it) whenever enough new objects had survived. Frozen, they are skipped (Instagram's `gc.freeze`)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports the URL modules and views now, not on a first request
    gc.collect()
    gc.freeze()
