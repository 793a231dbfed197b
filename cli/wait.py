"""A submit's wait for its key's result, on a confirmed subscription.

It blocks on the subscription and sends nothing, except one re-check (result, lock,
alive workers) each time a wait capped by the lock's TTL runs out; then it enqueues
once more when the lock vanished with no result (the holder died), and again each time
a holder was seen and vanished. A dropped connection is subscribed again and the result
read again, until the submit's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from compiler_tasks.errors import FleetTimeout, RedisUnavailable
from compiler_tasks.protocol.jobs import Job

from .transport import Broken, Subscription


class Owner(Protocol):
    """What a wait needs of its submit (:class:`cli.client.Submit`)."""

    job: Job
    started: float
    deadline: float
    say: Callable[[str], None]
    warn: Callable[[str], None]

    def check(self, key: str) -> tuple[dict[str, Any] | None, bool]: ...

    def send(self) -> None: ...


class Wait:
    """The wait for a key's result on a confirmed subscription (see the module doc);
    ``cap`` is the lock's TTL in seconds."""

    def __init__(self, owner: Owner, subscription: Subscription, cap: float) -> None:
        self.owner, self.subscription, self.cap = owner, subscription, cap
        self.key = owner.job.key
        self.reenqueued = self.holder_seen = False

    def run(self) -> dict[str, Any]:
        run, cap = self.owner, self.cap
        wake_at = min(time.monotonic() + cap, run.deadline)
        while True:
            now = time.monotonic()
            if now >= run.deadline:
                raise FleetTimeout(
                    f"timed out after {run.deadline - run.started:g} s waiting for the fleet "
                    f"to compile {self.key[:12]} (no result before the deadline); "
                    "see `scssq health`"
                )
            try:
                message = self.subscription.next(min(wake_at, run.deadline) - now)
                if message is None and time.monotonic() >= wake_at:
                    result, locked = run.check(self.key)
                    if result is not None:
                        return result
                    if time.monotonic() < run.deadline:
                        self.idle(locked)
                    wake_at = min(time.monotonic() + cap, run.deadline)
            except Broken as e:
                result = self.reconnect(e)
                if result is not None:
                    return result
                wake_at = min(time.monotonic() + cap, run.deadline)
                continue
            if message is None:
                continue
            if message.get("type") == "done" and isinstance(message.get("result"), dict):
                result = dict(message["result"])
                if result.get("for") in (None, run.job.submit):
                    return result  # else: another submitter's request was refused
            elif message.get("event") == "started":
                self.holder_seen = True
                worker = message.get("worker")
                run.say(
                    f"compiling on worker {worker}"
                    if message.get("submit") == run.job.submit
                    else f"waiting for another request's compile on worker {worker}"
                )

    def idle(self, locked: bool) -> None:
        """A capped wait ran out: enqueue once more if the lock vanished with no result
        (once, or again each time a holder was seen and then vanished: it died)."""
        if not locked and (self.holder_seen or not self.reenqueued):
            self.reenqueued, self.holder_seen = True, False
            self.owner.say("the compile's lock vanished with no result; enqueueing once more")
            self.owner.send()

    def reconnect(self, error: Exception) -> dict[str, Any] | None:
        """Subscribe again after a dropped connection, then read the result again."""
        run = self.owner
        run.warn(f"lost Redis while waiting for {self.key[:12]} ({error}); reconnecting")
        pause = 0.1
        while True:
            if time.monotonic() + pause >= run.deadline:
                raise RedisUnavailable(
                    f"Redis unreachable while waiting for compile key {self.key[:12]}: {error}"
                ) from error
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            try:
                self.subscription.open()
                return run.check(self.key)[0]
            except Broken as e:
                error = e
