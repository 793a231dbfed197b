"""The fleet registry in Redis: which workers are alive, which engines they run,
which store they write to.

Workers write it (see ``worker.bootsteps.FleetHeartbeat``); clients read it to compute
compile keys and to tell a user when no worker is alive. Imports no redis-py at run
time: the client uses :func:`store_mismatch`.

Two kinds of record, kept apart on purpose:

* ``<prefix>:workers`` and ``<prefix>:stores`` say who is alive NOW: scored by the last
  heartbeat, read through the alive window, a stopping worker leaves. ``scssq health``
  and the client's "no worker alive" line read these. ``<prefix>:instances`` holds one
  ``<node name> <process id>`` per worker process the same way: two workers started
  under one node name (``celery@host`` twice on one host) are one member of
  ``workers`` but two of ``instances``, which :func:`name_collisions` turns into the
  warning ``scssq health`` prints.
* ``<prefix>:engines`` is the LAST-KNOWN engine version of each engine: written by every
  heartbeat, with no expiry, and never removed when a worker stops. Clients compute
  compile keys from it, so a submit can enqueue while no worker runs and the queue it
  grows wakes a pool scaled to zero (KEDA, deploy/k8s-scale-to-zero). Only a Redis where
  no worker ever ran (or that lost its data) lacks it: the client then exits 3 and says
  to start one worker once (:data:`cli.client.NEVER_REGISTERED`).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..envvars import store_identity
from ..keys import RedisKeys
from ..settings import Settings, redact_url

if TYPE_CHECKING:
    import redis

#: Heartbeats an instance record outlives before a heartbeat of another worker drops it.
_INSTANCE_KEEP = 10


def instance_id() -> str:
    """This worker process among all: host, process id and a random part (pid 1 in
    every container)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def beat(
    settings: Settings,
    client: redis.Redis,
    hostname: str,
    engines: dict[str, str],
    instance: str = "",
) -> None:
    """Publish a worker's engines and store, and mark it alive (one round trip)."""
    keys = RedisKeys(settings.prefix)
    mapping: dict[str | bytes, bytes | float | int | str] = {k: v for k, v in engines.items()}
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.engines, mapping=mapping)
    pipe.zadd(keys.stores, {store_identity(settings.store_url): now})
    pipe.zadd(keys.workers, {hostname: now})
    if instance:
        pipe.zadd(keys.instances, {f"{hostname} {instance}": now})
        stale = now - _INSTANCE_KEEP * settings.worker_alive_window
        pipe.zremrangebyscore(keys.instances, "-inf", stale)
    pipe.execute()


def leave(settings: Settings, client: redis.Redis, hostname: str, instance: str = "") -> None:
    """Remove a stopping worker from the alive sets."""
    keys = RedisKeys(settings.prefix)
    pipe = client.pipeline(transaction=False)
    pipe.zrem(keys.workers, hostname)
    if instance:
        pipe.zrem(keys.instances, f"{hostname} {instance}")
    pipe.execute()


def alive_workers(settings: Settings, client: redis.Redis) -> list[str]:
    """Hostnames whose heartbeat is younger than the alive window."""
    since = time.time() - settings.worker_alive_window
    names = client.zrangebyscore(RedisKeys(settings.prefix).workers, since, "+inf")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def name_collisions(instances: Iterable[bytes | str]) -> list[str]:
    """One warning per node name that several alive worker processes answer under
    (members of the ``instances`` set: ``<node name> <process id>``), naming the fix."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for member in instances:
        text = member.decode() if isinstance(member, bytes) else member
        name, _, instance = text.partition(" ")
        by_name[name].append(instance)
    return [
        f"{len(found)} workers answer as {name} ({', '.join(sorted(found))}): health counts "
        "them as one and they share one heartbeat file; start each with its own name, "
        "e.g. `celery -A compiler_tasks.app worker -n w1@%h`, then `-n w2@%h`"
        for name, found in sorted(by_name.items())
        if len(found) > 1
    ]


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
