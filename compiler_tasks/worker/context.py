"""What one worker process owns: its Redis client, store and engine processes.

Pool processes build their resources lazily, after the fork (a Redis socket or
an engine child must never be shared across a fork). Free of Celery: the
pipeline uses it, and the Celery side (:mod:`.bootsteps`, :mod:`.tasks`) builds
on it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import redis

from ..coordination import connections
from ..engines.base import Engine
from ..engines.registry import engine_version, open_engine
from ..keys import RedisKeys
from ..observability import metrics
from ..settings import ENGINES, Settings
from ..store import Store, open_store


def redis_client(settings: Settings, name: str | None = None) -> redis.Redis:
    """A Redis client with bounded connect time (and verified TLS for rediss://)."""
    return connections.redis_client(settings, name)


@dataclass
class WorkerContext:
    """Per-process resources of a worker; see :func:`context`."""

    settings: Settings
    redis: redis.Redis
    store: Store
    keys: RedisKeys
    hostname: str
    engines: dict[str, Engine] = field(default_factory=dict)

    def engine(self, name: str) -> Engine:
        if name not in self.engines:
            self.engines[name] = open_engine(self.settings, name)
        return self.engines[name]

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()


_context: WorkerContext | None = None
_context_pid = 0


def context(hostname: str | None = None) -> WorkerContext:
    """This process's WorkerContext, built on first use after a fork."""
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        settings = Settings.from_env()
        _context = WorkerContext(
            settings=settings,
            redis=redis_client(settings, f"scssq-worker-{os.getpid()}"),
            store=metrics.timed_store(open_store(settings.store_url)),
            keys=RedisKeys(settings.prefix),
            hostname=hostname or socket.gethostname(),
        )
        _context_pid = os.getpid()
    return _context


def installed_engines() -> dict[str, str]:
    """Engine name -> exact version, for every engine this worker can run.

    Raises ConfigError when one cannot run here (no bundled Dart Sass binary for this
    platform): the worker then refuses to start (see :class:`.bootsteps.FleetHeartbeat`).
    """
    return {name: engine_version(name) for name in ENGINES}
