"""Acks and rejects that did not reach Redis: kept, and sent again on the consumer's timer.

A worker acknowledges a task message once the task ran (``acks_late``). kombu's
Redis transport keeps each delivered message in the channel's unacked set until its
ack reaches Redis. When the ack fails with a connection error (Redis unreachable for
longer than the command's one retry, ``SCSSQ_REDIS_REPLY_TIMEOUT`` each), kombu logs
"Couldn't ack" and moves on, and the message stays in that set. At prefetch 1 a
consumer with one message in it never consumes again, while its heartbeats stay
fresh. A reject (a requeue when the worker was lost, or the consumer refusing an
unknown or malformed message) fails the same way.

:class:`Request` and two Celery signals watch each ack or reject, and
:class:`SettleAcks` sends one that failed again on the consumer's timer until Redis
takes it, every :data:`SETTLE_INTERVAL` seconds at first, backing off to
:data:`SETTLE_BACKOFF_MAX` while Redis stays away (each try blocks the event loop
until it fails). Both are idempotent: an ack removes the message from Redis's unacked
set (already gone is fine), a requeue puts it back only if it is still unacked.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery import bootsteps, signals
from celery.worker.request import Request as CeleryRequest
from kombu.exceptions import MessageStateError
from kombu.message import Message

log = logging.getLogger(__name__)

#: Seconds between two looks for a failed ack or reject, and before its first new try.
SETTLE_INTERVAL = 2.0
#: Longest wait, in seconds, between two tries while the broker stays away.
SETTLE_BACKOFF_MAX = 16.0


@dataclass
class _Watched:
    """One ack (``requeue`` None) or reject asked for, and the loop turn it was asked in."""

    requeue: bool | None
    turn: int
    failed: bool = False  # its own try failed: logged once


@dataclass
class Unsettled:
    """Task messages whose ack or reject was asked for, until the broker has taken it.

    Celery sends an ack on the event loop's next turn (``call_soon``), and a turn runs
    those calls before its timers. The hub counts turns (:meth:`next_turn`, an
    ``on_tick`` callback), so a message still unsettled in a later turn than the one
    that asked had its ack tried, and failed: only then is it sent again. (Earlier, it
    may not have run yet, even two timer ticks later within one turn: sending it
    then would ack it twice, and Celery's own ack would raise ``MessageStateError``.)
    Watching is off until :class:`SettleAcks` runs (``active``), so nothing piles up
    where no timer settles.
    """

    watched: dict[Message, _Watched] = field(default_factory=dict)
    active: bool = False
    turn: int = 0
    backoff: float = SETTLE_INTERVAL
    next_try: float = 0.0

    def next_turn(self) -> None:
        self.turn += 1

    def watch(self, message: Message, requeue: bool | None) -> None:
        if self.active and not message.acknowledged:
            self.watched.setdefault(message, _Watched(requeue, self.turn))

    def settle(self) -> int:
        """Forget settled messages and send failed ones again; returns how many are left.

        Stops at the first failure: the broker is still away (or read-only, during a
        failover), and each further try would block the event loop as long again. The
        next try waits twice as long as the last one, up to :data:`SETTLE_BACKOFF_MAX`.
        """
        for message, entry in list(self.watched.items()):
            if message.acknowledged:
                del self.watched[message]
                continue
            due = entry.turn < self.turn and time.monotonic() >= self.next_try
            if due and not self._try(message, entry):
                break
        return len(self.watched)

    def _try(self, message: Message, entry: _Watched) -> bool:
        if not entry.failed:
            entry.failed = True
            log.warning(
                "%s of task message %s did not reach the broker; sending it again",
                "ack" if entry.requeue is None else "reject",
                message.delivery_tag,
            )
        try:
            if entry.requeue is None:
                message.ack()
            else:
                message.reject(requeue=entry.requeue)
        except MessageStateError:  # settled meanwhile, by another path: nothing to send
            pass
        except Exception as e:  # connection, timeout, READONLY in a failover: all pass
            self.next_try = time.monotonic() + self.backoff
            log.info(
                "task message %s still unsettled (next try in %g s): %s",
                message.delivery_tag,
                self.backoff,
                e,
            )
            self.backoff = min(self.backoff * 2, SETTLE_BACKOFF_MAX)
            return False
        else:
            log.warning("task message %s settled", message.delivery_tag)
        self.backoff = SETTLE_INTERVAL
        del self.watched[message]
        return True

    def clear(self) -> None:
        self.watched.clear()
        self.backoff = SETTLE_INTERVAL
        self.next_try = 0.0


#: This worker process's unsettled messages (only its main process acks).
UNSETTLED = Unsettled()


class Request(CeleryRequest):
    """Celery's task request, watching its ack or reject until the broker takes it."""

    # Watched after Celery asked for it: with ``-P threads`` a task thread acknowledges,
    # and a watch that came first could outlast a turn and send the ack before Celery.

    def acknowledge(self) -> None:
        asked = self.acknowledged
        super().acknowledge()
        if not asked:
            UNSETTLED.watch(self.message, None)

    def reject(self, requeue: bool = False) -> None:
        asked = self.acknowledged
        super().reject(requeue)
        if not asked:
            UNSETTLED.watch(self.message, requeue)


@signals.task_rejected.connect
@signals.task_unknown.connect
def _consumer_rejected(sender: Any = None, message: Message | None = None, **_: Any) -> None:
    """The consumer refused an unknown or malformed message: a reject, already tried."""
    if message is not None:
        UNSETTLED.watch(message, False)


class SettleAcks(bootsteps.StartStopStep):
    """Consumer step: settles watched acks and rejects on the consumer's timer."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        if parent.hub is None:  # gevent or eventlet: Celery sends acks at once, unwatched
            return
        parent.hub.on_tick.add(UNSETTLED.next_turn)
        UNSETTLED.active = True
        self.tref = parent.timer.call_repeatedly(SETTLE_INTERVAL, UNSETTLED.settle)

    def stop(self, parent: Any) -> None:
        if self.tref is None:
            return
        self.tref.cancel()
        self.tref = None
        parent.hub.on_tick.discard(UNSETTLED.next_turn)
        # A new connection brings a new channel: kombu restores the old one's unacked
        # messages to the queue when it closes (else the visibility timeout does).
        UNSETTLED.active = False
        UNSETTLED.clear()
