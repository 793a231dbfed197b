"""What KEDA's Redis list scaler does for a pool at zero, in a thread of the test.

KEDA polls ``LLEN <queue>`` (its Lua script: TYPE, then LLEN) every ``pollingInterval``;
with ``minReplicaCount: 0`` and ``activationListLength: 0`` it scales the Deployment
from 0 to 1 as soon as the list holds a task. :class:`QueueScaler` does the same to a
:class:`~tests.support.fleet.Fleet`: while no worker process of the fleet runs and the
queue's list is not empty, it starts one real ``celery worker``. It never stops one
(scale-down is the warm shutdown tests/test_autoscale.py covers).
"""

from __future__ import annotations

import threading
from types import TracebackType

import redis

from .fleet import Fleet


class QueueScaler:
    """Start a worker of ``fleet`` whenever its queue is non-empty and none runs."""

    def __init__(self, fleet: Fleet, concurrency: int = 1, interval: float = 0.1) -> None:
        self.fleet = fleet
        self.concurrency = concurrency
        self.interval = interval
        self.queue = fleet.env["SCSSQ_QUEUE"]
        #: Workers this scaler started.
        self.woken = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-scaler", daemon=True)
        self._redis = redis.Redis.from_url(fleet.env["SCSSQ_REDIS_URL"])

    def running(self) -> bool:
        """Whether a worker process of the fleet is alive (started, not exited)."""
        return any(proc.poll() is None for proc in self.fleet.workers)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                if int(self._redis.llen(self.queue)) > 0 and not self.running():
                    self.fleet.start_worker(self.concurrency, wait=False)
                    self.woken += 1
        except BaseException as e:  # reported by __exit__
            self.error = e

    def __enter__(self) -> QueueScaler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._redis.close()
        if self.error is not None and exc is None:
            raise RuntimeError(f"the scaler failed: {self.error!r}") from self.error
