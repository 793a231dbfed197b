"""The fleet registry in Redis: which workers are alive, which engines they run,
which store they write to.

Workers write it (see ``worker.bootsteps.FleetHeartbeat``); clients read it to compute
compile keys and to tell a user when no worker is alive. Imports no redis-py at run
time: the client uses :func:`store_mismatch`.

Two kinds of record, kept apart on purpose:

* ``<prefix>:workers`` and ``<prefix>:stores`` say who is alive NOW: scored by the last
  heartbeat, read through the alive window, a stopping worker leaves. ``scssq health``
  and the client's "no worker alive" line read these.
* ``<prefix>:engines`` is the LAST-KNOWN engine version of each engine: written by every
  heartbeat, with no expiry, and never removed when a worker stops. Clients compute
  compile keys from it, so a submit can enqueue while no worker runs and the queue it
  grows wakes a pool scaled to zero (KEDA, deploy/k8s-scale-to-zero). Only a Redis where
  no worker ever ran (or that lost its data) lacks it: the client then exits 3 and says
  to start one worker once (:data:`cli.client.NEVER_REGISTERED`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..envvars import store_identity
from ..keys import RedisKeys
from ..settings import Settings, redact_url

if TYPE_CHECKING:
    import redis


def beat(settings: Settings, client: redis.Redis, hostname: str, engines: dict[str, str]) -> None:
    """Publish a worker's engines and store, and mark it alive (one round trip)."""
    keys = RedisKeys(settings.prefix)
    mapping: dict[str | bytes, bytes | float | int | str] = {k: v for k, v in engines.items()}
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.engines, mapping=mapping)
    pipe.zadd(keys.stores, {store_identity(settings.store_url): now})
    pipe.zadd(keys.workers, {hostname: now})
    pipe.execute()


def leave(settings: Settings, client: redis.Redis, hostname: str) -> None:
    """Remove a stopping worker from the alive set."""
    client.zrem(RedisKeys(settings.prefix).workers, hostname)


def alive_workers(settings: Settings, client: redis.Redis) -> list[str]:
    """Hostnames whose heartbeat is younger than the alive window."""
    since = time.time() - settings.worker_alive_window
    names = client.zrangebyscore(RedisKeys(settings.prefix).workers, since, "+inf")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def worker_stores(settings: Settings, client: redis.Redis) -> list[str]:
    """The stores that workers alive in the window write to (usually one)."""
    since = time.time() - settings.worker_alive_window
    names = client.zrangebyscore(RedisKeys(settings.prefix).stores, since, "+inf")
    return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def store_mismatch(settings: Settings, stores: list[str]) -> str | None:
    """Why this client would not find the workers' CSS in its store, or None."""
    mine = store_identity(settings.store_url)
    if not stores or mine in stores:
        return None
    return (
        f"SCSSQ_STORE is {redact_url(mine)} here, but the fleet's workers write to "
        f"{', '.join(stores)}: this client would not find their CSS; set SCSSQ_STORE "
        "to the workers' store"
    )
