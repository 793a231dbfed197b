"""Fleet-wide submit counters in Redis, bumped by clients, exported by workers.

A cache hit never reaches a worker, so the client counts its own submit's
outcome with one ``INCR <prefix>:stats:<name>`` (the clients' Redis ACL allows
``INCR`` on ``<prefix>:stats:*``): ``hits`` (the result existed), ``misses``
(this submit's task compiled it) and ``shared`` (it waited for another
request's compile). Workers read them when Prometheus scrapes
(:class:`compiler_tasks.metrics.FleetCollector`). Counting is best effort: it
never fails or slows a submit beyond that one command. Importing it imports
nothing (the cache-hit fast path counts with :data:`COUNTERS` and :func:`key`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

#: Submit outcome (as the client reports it) -> counter name.
COUNTERS = {"cached": "hits", "compiled": "misses", "shared": "shared"}
#: Counter name -> the ``result`` label of ``scssq_cache_requests_total``.
LABELS = {"hits": "hit", "misses": "miss", "shared": "shared"}


def key(prefix: str, name: str) -> str:
    return f"{prefix}:stats:{name}"


def count_submit(client: redis.Redis, prefix: str, outcome: str) -> None:
    """Count one submit's outcome; an error (Redis away, ACL) is logged and ignored."""
    name = COUNTERS.get(outcome)
    if name is None:
        return
    import redis

    try:
        client.incr(key(prefix, name))
    except redis.RedisError as e:
        log.debug("cannot count the submit in %s: %s", key(prefix, name), e)


def read(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Every counter as ``{result label: value}`` (missing counters are 0)."""
    names = list(LABELS)
    values = client.mget([key(prefix, n) for n in names])
    return {LABELS[n]: int(v or 0) for n, v in zip(names, values, strict=True)}
