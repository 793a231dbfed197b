"""The worker's Celery consumer steps: the fleet heartbeat of the worker's main process.

The heartbeat runs on the consumer's own timer, so it stops when the consumer's event
loop stops: it registers the engine versions this worker runs (clients need them to
compute compile keys), marks the worker alive in Redis and touches the liveness file
(:mod:`.probe`). The acks step lives with the acks it settles (:mod:`.acks`).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import bootsteps

from ..coordination.fleet import beat, instance_id, leave
from ..errors import ConfigError
from ..settings import Settings
from .context import installed_engines, redis_client
from .probe import heartbeat_path, touch

log = logging.getLogger(__name__)

#: Seconds between two fleet heartbeats of a worker.
HEARTBEAT_INTERVAL = 5.0


class FleetHeartbeat(bootsteps.StartStopStep):
    """Consumer step: beats on the consumer's timer while it consumes."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self.instance = instance_id()
        self.heartbeat_file = ""
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
        self.heartbeat_file = heartbeat_path(self.settings.heartbeat_file, hostname)
        self._beat(hostname)
        interval = min(HEARTBEAT_INTERVAL, self.settings.liveness_max_age / 3)
        self.tref = parent.timer.call_repeatedly(interval, self._beat, (hostname,))

    def _beat(self, hostname: str) -> None:
        # Liveness first: it says the consumer loop runs, whatever Redis does.
        try:
            touch(self.heartbeat_file)
        except OSError as e:
            log.warning("cannot touch heartbeat file %s: %s", self.heartbeat_file, e)
        try:
            beat(self.settings, self.client, hostname, self.engines, self.instance)
        except redis.RedisError as e:
            log.warning("fleet heartbeat failed: %s", e)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            leave(self.settings, self.client, parent.hostname, self.instance)
        except redis.RedisError:
            pass
