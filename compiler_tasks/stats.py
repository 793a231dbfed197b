"""Fleet-wide submit counters in Redis, bumped by clients, exported by workers.

A cache hit never reaches a worker, so the client counts its own submit's
outcome with an ``INCR <prefix>:stats:<name>`` (the clients' Redis ACL allows
``INCR`` on ``<prefix>:stats:*``): ``hits`` (the result existed), ``misses``
(this submit's task compiled it) and ``shared`` (it waited for another
request's compile). A :class:`cli.client.Client` sends its counts ahead of its
next lookup, in the same round trip, or when it is closed (or collected, or the
process exits); ``scssq submit`` sends its count at once. Workers read them when
Prometheus scrapes (:class:`compiler_tasks.metrics.FleetCollector`). Counting is
best effort: an error is logged and ignored. Importing it imports nothing (the
cache-hit fast path counts with :data:`COUNTERS` and :func:`key`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

#: Submit outcome (as the client reports it) -> counter name.
COUNTERS = {"cached": "hits", "compiled": "misses", "shared": "shared"}
#: Counter name -> the ``result`` label of ``scssq_cache_requests_total``.
LABELS = {"hits": "hit", "misses": "miss", "shared": "shared"}


def key(prefix: str, name: str) -> str:
    return f"{prefix}:stats:{name}"


def count(client: redis.Redis, prefix: str, names: list[str]) -> None:
    """Send the counts of ``names`` (counter names) in one pipeline and empty the list;
    errors (Redis away, ACL) are logged and ignored."""
    if not names:
        return
    import redis

    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.incr(key(prefix, name))
    sent = len(names)
    names.clear()
    try:
        counted(pipe.execute(raise_on_error=False), sent)
    except redis.RedisError as e:
        log.debug("cannot count %d submits under %s: %s", sent, prefix, e)


def counted(replies: list[Any], counts: int) -> list[Any]:
    """The replies after the first ``counts`` (INCRs sent ahead of other commands in one
    pipeline run with ``raise_on_error=False``): a refused count is logged and ignored,
    any other error reply is raised as ``execute`` would have."""
    for reply in replies[:counts]:
        if isinstance(reply, Exception):
            log.debug("cannot count a submit: %s", reply)
    rest = replies[counts:]
    for reply in rest:
        if isinstance(reply, Exception):
            raise reply
    return rest


def read(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Every counter as ``{result label: value}`` (missing counters are 0)."""
    names = list(LABELS)
    values = client.mget([key(prefix, n) for n in names])
    return {LABELS[n]: int(v or 0) for n, v in zip(names, values, strict=True)}
