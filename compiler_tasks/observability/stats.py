"""Fleet-wide submit counters in Redis, bumped by clients, exported by workers.

A cache hit never reaches a worker, so the client counts its own submit's
outcome with an ``INCR <prefix>:stats:<name>`` (the clients' Redis ACL allows
``INCR`` on ``<prefix>:stats:*``): ``hits`` (the result existed), ``misses``
(this submit's task compiled it) and ``shared`` (it waited for another
request's compile). The client (:mod:`cli.client`) sends each submit's count
once the CSS is written, in one write with its record task if it sends one.
Workers read them when Prometheus scrapes
(:class:`compiler_tasks.observability.metrics.FleetCollector`). Counting is best effort: a
refused or lost count is ignored. Importing it imports nothing (the cache-hit
client counts with :data:`COUNTERS` and :func:`key`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

#: Submit outcome (as the client reports it) -> counter name.
COUNTERS = {"cached": "hits", "compiled": "misses", "shared": "shared"}
#: Counter name -> the ``result`` label of ``scssq_cache_requests_total``.
LABELS = {"hits": "hit", "misses": "miss", "shared": "shared"}


def key(prefix: str, name: str) -> str:
    return f"{prefix}:stats:{name}"


def read(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Every counter as ``{result label: value}`` (missing counters are 0)."""
    names = list(LABELS)
    values = client.mget([key(prefix, n) for n in names])
    return {LABELS[n]: int(v or 0) for n, v in zip(names, values, strict=True)}
