"""Waking waiters: the done channel of a key and the wait on it.

A waiter subscribes to ``<prefix>:done:<key>`` and waits for the server's
confirmation *before* it reads ``<prefix>:result:<key>``, so a completion that
lands between the two is buffered on the subscription and never missed
(invariant 2). It then blocks on the socket: no command is sent while waiting,
except one re-check of the result and the lock each time a wait capped by the
lock's TTL runs out, or after a dropped connection.

Messages on the channel are JSON objects: ``{"type": "progress", ...}`` while
a holder works, and ``{"type": "done", "result": {...}}`` once. A refusal of
one request (its bundle or claimed key, not the key's compile) is a done
message whose result names that request's submit id in ``for``; every other
waiter ignores it.

Workers build the messages here (:func:`progress_message`, :func:`done_message`).
:class:`Waiter` is this wait on redis-py, used only by the tests (an honest waiter
beside forged requests, the wait's own tests); the client waits the same way on its
own connection, in :mod:`cli.wait`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from ..errors import FleetTimeout, RedisUnavailable
from ..keys import RedisKeys

log = logging.getLogger(__name__)

#: Upper bound of the pause between reconnection attempts, in seconds.
RECONNECT_BACKOFF_MAX = 2.0

ProgressHandler = Callable[[dict[str, Any]], None]
#: Called when a capped wait ran out with no result: gets whether the lock is held.
IdleHandler = Callable[[bool], None]


def progress_message(event: str, **fields: Any) -> str:
    return json.dumps({"type": "progress", "event": event, **fields}, separators=(",", ":"))


def done_message(result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "done", "result": result}


class Waiter:
    """Waits for the result of one compile key; use as a context manager."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, key: str, submit: str | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.key = key
        #: This waiter's submit id: a refusal addressed to another submit (``for``) is ignored.
        self.submit = submit
        self.channel = keys.done(key)
        self.result_key = keys.result(key)
        self.lock_key = keys.lock(key)
        self.pubsub = client.pubsub()
        #: Test hook: runs after the subscription is confirmed, before the result read.
        self.before_read: Callable[[], None] | None = None

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.pubsub.close()
        except redis.RedisError:
            pass

    def subscribe(self, deadline: float) -> dict[str, Any] | None:
        """Subscribe (confirmed), then read the result; returns it if it exists."""
        self.pubsub.subscribe(self.channel)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FleetTimeout(f"no subscription confirmation for {self.channel}")
            msg = self.pubsub.get_message(timeout=min(remaining, 1.0))
            if msg is not None and msg["type"] == "subscribe":
                break
        if self.before_read is not None:
            self.before_read()
        return self.read_result()

    def read_result(self) -> dict[str, Any] | None:
        raw = self.client.get(self.result_key)
        return None if raw is None else dict(json.loads(raw))

    def lock_held(self) -> bool:
        return bool(self.client.exists(self.lock_key))

    def wait(
        self,
        deadline: float,
        cap: float,
        on_progress: ProgressHandler | None = None,
        on_idle: IdleHandler | None = None,
    ) -> dict[str, Any]:
        """Block until the done message (or a result found on re-check); return the result.

        Each blocking read lasts at most ``cap`` seconds (the lock's TTL); when
        one runs out the result and the lock are read once. Raises FleetTimeout
        at ``deadline`` and RedisUnavailable when Redis stayed away until then.
        """
        wake_at = min(time.monotonic() + cap, deadline)
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise FleetTimeout(f"no result for compile key {self.key[:12]} before the deadline")
            try:
                msg = self.pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=max(0.0, wake_at - now)
                )
            except (redis.ConnectionError, redis.TimeoutError) as e:
                result = self._reconnect(deadline, e)
                if result is not None:
                    return result
                wake_at = min(time.monotonic() + cap, deadline)
                continue
            if msg is None:
                if time.monotonic() < wake_at:
                    continue
                try:
                    result = self.read_result()
                    lock_held = result is None and self.lock_held()
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    result = self._reconnect(deadline, e)
                    lock_held = True
                if result is not None:
                    return result
                if on_idle is not None:
                    on_idle(lock_held)
                wake_at = min(time.monotonic() + cap, deadline)
                continue
            data = json.loads(msg["data"])
            if data.get("type") == "done":
                result = dict(data["result"])
                if result.get("for") not in (None, self.submit):
                    continue  # another submitter's request was refused, not this key
                return result
            if on_progress is not None:
                on_progress(data)

    def _reconnect(self, deadline: float, error: Exception) -> dict[str, Any] | None:
        """Resubscribe after a dropped connection, then re-check the result."""
        log.warning("lost Redis while waiting for %s: %s; reconnecting", self.key[:12], error)
        pause = 0.1
        while True:
            if time.monotonic() + pause >= deadline:
                raise RedisUnavailable(
                    f"Redis unreachable while waiting for compile key {self.key[:12]}: {error}"
                ) from error
            time.sleep(pause)
            pause = min(pause * 2, RECONNECT_BACKOFF_MAX)
            try:
                self.pubsub.close()
                self.pubsub = self.client.pubsub()
                return self.subscribe(deadline)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                error = e
