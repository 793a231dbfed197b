"""Acks and rejects that did not reach Redis: kept, and sent again on the consumer's timer.

A worker acknowledges a task message once the task ran (``acks_late``). kombu's
Redis transport keeps each delivered message in the channel's unacked set until its
ack reaches Redis. When the ack fails with a connection error (Redis unreachable for
longer than the command's own retries, ``SCSSQ_REDIS_REPLY_TIMEOUT`` each), kombu
logs "Couldn't ack" and moves on, and the message stays in that set. At prefetch 1 a
consumer with one message in it never consumes again, while its heartbeats stay
fresh. A reject (requeue when the worker was lost) fails the same way.

:class:`Request` watches each ack or reject, and :class:`SettleAcks` sends one that
failed again every :data:`SETTLE_INTERVAL` seconds until Redis takes it. Both are
idempotent: an ack removes the message from Redis's unacked set (already gone is
fine), a requeue puts it back once (it is then no longer unacked). When the consumer
restarts on a new connection, the old channel's unacked messages are restored to the
queue by kombu (or by the visibility timeout), so the watch is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import bootsteps
from celery.worker.request import Request as CeleryRequest
from kombu.message import Message

log = logging.getLogger(__name__)

#: Seconds between two attempts to settle a failed ack or reject.
SETTLE_INTERVAL = 2.0


@dataclass
class _Watched:
    requeue: bool | None  # None: an ack; else a reject, with or without requeue
    ticks: int = 0  # timer ticks that found it unsettled


@dataclass
class Unsettled:
    """Task messages whose ack or reject was asked for, until the broker has taken it.

    Celery sends an ack on the event loop's next turn (``call_soon``), and a turn
    runs those calls before any timer, so a message still unsettled at a second
    timer tick had its ack tried, and failed: only then is it sent again. (At the
    first tick, the ack may not have run yet; sending it then could ack it twice.)
    """

    watched: dict[Message, _Watched] = field(default_factory=dict)

    def watch(self, message: Message, requeue: bool | None) -> None:
        if not message.acknowledged:
            self.watched.setdefault(message, _Watched(requeue))

    def settle(self, errors: tuple[type[BaseException], ...]) -> int:
        """One tick: forget settled messages, send failed ones again.

        Returns how many are still unsettled after their ack failed. Stops at the first
        connection error (in ``errors``): the broker is still away, and each further try
        would block the event loop as long again. Any other error drops the message: its
        channel closed since (a consumer restart), and kombu restored its unacked
        messages to the queue then, or the visibility timeout will.
        """
        for message, entry in list(self.watched.items()):
            if message.acknowledged:
                del self.watched[message]
                continue
            entry.ticks += 1
            if entry.ticks < 2:
                continue
            if entry.ticks == 2:
                log.warning(
                    "%s of task message %s did not reach the broker; sending it again every %g s",
                    "ack" if entry.requeue is None else "reject",
                    message.delivery_tag,
                    SETTLE_INTERVAL,
                )
            try:
                if entry.requeue is None:
                    message.ack()
                else:
                    message.reject(requeue=entry.requeue)
            except errors as e:
                log.info("task message %s still unsettled: %s", message.delivery_tag, e)
                break
            except Exception:  # e.g. its channel closed since: kombu restored the message
                log.exception("task message %s cannot be settled; dropped", message.delivery_tag)
            else:
                log.warning(
                    "task message %s settled: the worker consumes again", message.delivery_tag
                )
            del self.watched[message]
        return sum(1 for entry in self.watched.values() if entry.ticks >= 2)

    def clear(self) -> None:
        self.watched.clear()


#: This worker process's unsettled messages (only its main process acks).
UNSETTLED = Unsettled()


class Request(CeleryRequest):
    """Celery's task request, watching its ack or reject until the broker takes it."""

    def acknowledge(self) -> None:
        if not self.acknowledged:
            UNSETTLED.watch(self.message, None)
        super().acknowledge()

    def reject(self, requeue: bool = False) -> None:
        if not self.acknowledged:
            UNSETTLED.watch(self.message, requeue)
        super().reject(requeue)


class SettleAcks(bootsteps.StartStopStep):
    """Consumer step: settles noted acks and rejects on the consumer's timer."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        errors = tuple(parent.connection_errors)
        self.tref = parent.timer.call_repeatedly(SETTLE_INTERVAL, self._settle, (errors,))

    def _settle(self, errors: tuple[type[BaseException], ...]) -> None:
        if UNSETTLED.watched:
            UNSETTLED.settle(errors)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        # A new connection brings a new channel: the old one's unacked messages go back
        # to the queue (kombu restores them on close, or the visibility timeout does).
        UNSETTLED.clear()
