"""The fleet registry in Redis: which workers are alive, which engines they run.

Workers write it (see ``worker.bootsteps.FleetHeartbeat``); clients read it to compute
compile keys and to tell a user when no worker is alive. Redis only: cheap to
import on the client's hit path.
"""

from __future__ import annotations

import time

import redis

from ..keys import RedisKeys
from ..settings import Settings


def beat(settings: Settings, client: redis.Redis, hostname: str, engines: dict[str, str]) -> None:
    """Publish a worker's engines and mark it alive (one round trip)."""
    keys = RedisKeys(settings.prefix)
    mapping: dict[str | bytes, bytes | float | int | str] = {k: v for k, v in engines.items()}
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.engines, mapping=mapping)
    pipe.zadd(keys.workers, {hostname: time.time()})
    pipe.execute()


def leave(settings: Settings, client: redis.Redis, hostname: str) -> None:
    """Remove a stopping worker from the alive set."""
    client.zrem(RedisKeys(settings.prefix).workers, hostname)


def alive_workers(settings: Settings, client: redis.Redis) -> list[str]:
    """Hostnames whose heartbeat is younger than the alive window."""
    since = time.time() - settings.worker_alive_window
    names = client.zrangebyscore(RedisKeys(settings.prefix).workers, since, "+inf")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
