"""A guard around kombu's Redis channel for a broker connection lost with messages held.

When the broker's Redis goes away (a Sentinel failover: the master killed or demoted),
Celery's consumer first *collects* its kombu connection, which detaches the transport
from it (``transport.client = None``), then closes it. If the first close of the
channel failed on the dead socket, the second one requeues the messages the worker
still holds (a task running with late acks, a countdown re-check) through a new
connection pool, built from ``transport.client``: ``AttributeError: 'NoneType' object
has no attribute 'hostname'``. That is no connection error, so Celery treats it as
unrecoverable and the worker exits (kombu 5.7; ``tests/faults/test_sentinel.py``).

The guard makes that call a connection error, which Celery's close ignores: the
consumer reconnects (to the new master, through the Sentinels) and the worker keeps
running. The held messages stay in kombu's unacked set: a running task acknowledges
its own when it ends, and anything else is redelivered after the visibility timeout;
a waiting client does not depend on either (it re-enqueues when the lock vanishes
with no result).
"""

from __future__ import annotations

from typing import Any


def guard_collected_channels() -> None:
    """Make a kombu Redis channel whose transport was detached raise a connection error
    instead of AttributeError when it needs a new connection pool (idempotent)."""
    import redis
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    original = channel._connparams
    if getattr(original, "scssq_guarded", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError(
                "broker connection already closed; its unacknowledged messages stay in "
                "the unacked set until their visibility timeout"
            )
        return original(self, asynchronous)

    _connparams.scssq_guarded = True  # type: ignore[attr-defined]
    channel._connparams = _connparams  # type: ignore[method-assign]
