"""What one worker process owns: its Redis client, store, engine processes, and
the fleet heartbeat of the worker's main process.

Pool processes build their resources lazily, after the fork (a Redis socket or
an engine child must never be shared across a fork). The heartbeat runs on the
consumer's own timer, so it stops when the consumer's event loop stops: it
registers the engine versions this worker runs (clients need them to compute
compile keys) and marks the worker alive.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import bootsteps

from ..coordination import connections
from ..coordination.fleet import beat, leave
from ..engines.libsass.process import Engine, engine_version, open_engine
from ..errors import ConfigError
from ..keys import RedisKeys
from ..observability import metrics
from ..settings import ENGINES, Settings
from ..store.file import Store, open_store
from .probe import touch

log = logging.getLogger(__name__)

#: Seconds between two fleet heartbeats of a worker.
HEARTBEAT_INTERVAL = 5.0


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
    platform): the worker then refuses to start (see FleetHeartbeat).
    """
    return {name: engine_version(name) for name in ENGINES}


class FleetHeartbeat(bootsteps.StartStopStep):
    """Consumer step: beats on the consumer's timer while it consumes."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self.settings = Settings.from_env()
        self.client = redis_client(self.settings, "scssq-heartbeat")
        try:
            self.settings.check_work_dir()
            self.engines = installed_engines()
        except ConfigError as e:  # e.g. dart-sass without a bundled binary for this platform
            log.critical("scssq worker cannot start: %s", e)
            raise SystemExit(f"scssq worker cannot start: {e}") from None

    def start(self, parent: Any) -> None:
        hostname = parent.hostname
        self._beat(hostname)
        interval = min(HEARTBEAT_INTERVAL, self.settings.liveness_max_age / 3)
        self.tref = parent.timer.call_repeatedly(interval, self._beat, (hostname,))

    def _beat(self, hostname: str) -> None:
        # Liveness first: it says the consumer loop runs, whatever Redis does.
        try:
            touch(self.settings.heartbeat_file)
        except OSError as e:
            log.warning("cannot touch heartbeat file %s: %s", self.settings.heartbeat_file, e)
        try:
            beat(self.settings, self.client, hostname, self.engines)
        except redis.RedisError as e:
            log.warning("fleet heartbeat failed: %s", e)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            leave(self.settings, self.client, parent.hostname)
        except redis.RedisError:
            pass
