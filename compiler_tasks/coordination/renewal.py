"""Keeping a held compile lock alive for the whole job: one renewal thread per job.

A job holds its key's lock from the acquire, through every entry's compile and the
upload, to the completing Lua call (invariant 3). :class:`Renewal` is the one mechanism
that keeps it: a daemon thread in the task's process, started right after the acquire
and stopped after the completing call, that renews the lock every ``ttl / 3``. The
engine runs in a child process (libsass holds the GIL only there), so this thread runs
whatever the engine does. It rides out a Redis blip shorter than the TTL and, once the
lock is no longer this job's, sets :attr:`Renewal.lost`: the engine's ``tick`` reads it
(no Redis command) and kills the compile, and the job neither uploads nor announces.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import redis

from ..observability import metrics
from .lock import Lock, Outcome

log = logging.getLogger(__name__)


class Renewal:
    """Renew ``lock`` every ttl/3 in a thread while the ``with`` block runs."""

    def __init__(self, lock: Lock, ttl: float) -> None:
        self.lock = lock
        self.ttl = ttl
        self.interval = ttl / 3
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"scssq-renew-{lock.key[:12]}", daemon=True
        )

    @property
    def lost(self) -> bool:
        """True once the lock is known not to be this job's any more."""
        return self._lost.is_set()

    def held(self) -> bool:
        """The engine's ``tick``: False stops the compile (the lock was lost)."""
        return not self._lost.is_set()

    def __enter__(self) -> Renewal:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        renewed_at = time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                owned = self.lock.renew() is Outcome.DONE
            except redis.RedisError as e:
                metrics.renewal_failed("redis")
                if time.monotonic() - renewed_at < self.ttl:
                    log.warning("renewing the lock of %s failed (%s); retrying", self.lock.key, e)
                    continue
                log.warning("lock of %s unrenewable for a whole TTL: %s", self.lock.key[:12], e)
                owned = False
            if not owned:
                self._lost.set()
                return
            renewed_at = time.monotonic()
