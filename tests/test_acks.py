"""Acks that did not reach Redis are sent again (compiler_tasks/worker/acks.py).

kombu's own Redis transport on a real redis-server, behind a loopback proxy that
partitions it: every connection silently dead, new ones too, until it heals.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.asynchronous.hub import Hub
from kombu.asynchronous.timer import Timer
from kombu.message import Message

from compiler_tasks.worker.acks import SETTLE_INTERVAL, UNSETTLED, Request, SettleAcks, Unsettled
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)


class Broker:
    """One message consumed at prefetch 1 through ``proxy``, not yet acknowledged."""

    def __init__(self, redis_server: RedisServer, proxy: TcpProxy) -> None:
        name = "acks-test-" + secrets.token_hex(4)
        self.queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
        self.redis = redis_server.client()
        with Connection(redis_server.url) as direct:
            Producer(direct).publish(
                {"n": 1}, exchange=self.queue.exchange, routing_key=name, declare=[self.queue]
            )
        # One reply timeout, then one retry on a new connection, as the worker's broker.
        options = {"socket_timeout": 0.5, "retry_on_timeout": True}
        self.conn = Connection(f"redis://127.0.0.1:{proxy.port}/0", transport_options=options)
        self.channel: Any = self.conn.channel()
        self.channel.basic_qos(0, 1, False)
        got: list[Message] = []
        callbacks = [lambda _body, message: got.append(message)]
        self.consumer = Consumer(self.channel, [self.queue], callbacks=callbacks)
        self.consumer.consume()
        self.conn.drain_events(timeout=5)
        self.message = got[0]
        self.errors = tuple(self.conn.connection_errors)

    def unacked(self) -> bool:
        """Whether Redis still holds the message as delivered but not acknowledged."""
        return bool(self.redis.hexists("unacked", self.message.delivery_tag))

    def consumes(self) -> bool:
        return bool(self.channel.qos.can_consume())


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[tuple[Broker, TcpProxy]]:
    proxy = TcpProxy(redis_server.port)
    b = Broker(redis_server, proxy)
    yield b, proxy
    proxy.close()
    b.conn.release()


def test_a_failed_ack_is_sent_again_once_redis_is_back(broker: tuple[Broker, TcpProxy]) -> None:
    b, proxy = broker
    unsettled = Unsettled(active=True)
    unsettled.watch(b.message, None)
    proxy.partition()
    b.message.ack_log_error(log, b.errors)  # what Celery runs: logs the failure, goes on
    assert not b.message.acknowledged and b.unacked()
    assert not b.consumes()  # at prefetch 1, this consumer would never consume again
    unsettled.settle()  # the turn that asked: Celery's ack may not have run yet
    unsettled.next_turn()
    assert unsettled.settle() == 1  # sent again, Redis still away
    assert b.unacked() and not b.consumes()
    assert unsettled.next_try - time.monotonic() > SETTLE_INTERVAL / 2  # backs off
    proxy.heal()
    assert unsettled.settle() == 1  # before its next try
    time.sleep(SETTLE_INTERVAL)
    assert unsettled.settle() == 0
    assert b.message.acknowledged and not b.unacked() and b.consumes()


def test_an_ack_that_went_through_is_forgotten_not_sent_twice(
    broker: tuple[Broker, TcpProxy],
) -> None:
    b, _ = broker
    unsettled = Unsettled(active=True)
    unsettled.watch(b.message, None)
    b.message.ack_log_error(log, b.errors)
    assert b.message.acknowledged and not b.unacked()
    unsettled.next_turn()
    assert unsettled.settle() == 0  # a second ack would raise MessageStateError


def test_timer_ticks_within_one_loop_turn_never_send_an_ack_celery_has_queued(
    broker: tuple[Broker, TcpProxy],
) -> None:
    """Celery sends an ack on the hub's next turn (call_soon). After a stall, several
    timers run in one turn: the ack asked for by a timer (a time limit, a revoked
    deferral), two settle ticks, and something that blocked in between (a heartbeat
    reconnecting). The second tick must not send it: Celery's own ack would then raise."""
    b, _ = broker
    unsettled = Unsettled(active=True)
    hub = Hub(Timer())
    hub.on_tick.add(unsettled.next_turn)

    def acknowledge_from_a_timer() -> None:
        unsettled.watch(b.message, None)  # as acks.Request.acknowledge
        hub.call_soon(b.message.ack_log_error, log, b.errors)  # as Celery's call_soon_ack

    hub.call_later(0, acknowledge_from_a_timer)
    hub.call_repeatedly(0.3, unsettled.settle)
    hub.call_later(0.31, time.sleep, 0.4)
    time.sleep(0.35)  # the loop was busy: all of them are due at its next turn
    loop = hub.create_loop()
    next(loop)  # the timers, two settle ticks among them
    assert not b.message.acknowledged and unsettled.watched
    next(loop)  # Celery's ack; MessageStateError here had a tick sent it
    assert b.message.acknowledged and not b.unacked()
    hub.close()


def test_a_failed_requeue_is_sent_again_and_puts_the_message_back(
    broker: tuple[Broker, TcpProxy],
) -> None:
    b, proxy = broker
    unsettled = Unsettled(active=True)
    unsettled.watch(b.message, True)
    proxy.partition()
    b.message.reject_log_error(log, b.errors, requeue=True)
    assert not b.message.acknowledged and b.redis.llen(b.queue.name) == 0
    proxy.heal()
    unsettled.next_turn()
    assert unsettled.settle() == 0
    assert b.redis.llen(b.queue.name) == 1 and not b.unacked() and b.consumes()


def test_a_reject_of_the_consumer_that_failed_is_sent_again(
    broker: tuple[Broker, TcpProxy],
) -> None:
    """Celery's consumer rejects an unknown or malformed message itself, then sends
    task_rejected (or task_unknown); the worker's UNSETTLED watches it from there."""
    b, proxy = broker
    proxy.partition()
    UNSETTLED.active = True
    try:
        b.message.reject_log_error(log, b.errors)
        signals.task_rejected.send(sender=None, message=b.message, exc=None)
        assert b.message in UNSETTLED.watched
        proxy.heal()
        UNSETTLED.next_turn()
        assert UNSETTLED.settle() == 0
    finally:
        UNSETTLED.active = False
        UNSETTLED.clear()
    assert b.message.acknowledged and not b.unacked() and b.redis.llen(b.queue.name) == 0


def test_the_worker_watches_every_task_and_runs_the_settling_step() -> None:
    from compiler_tasks.app import app
    from compiler_tasks.worker import tasks

    assert tasks.compile_bundle.Request is Request and tasks.record_commit.Request is Request
    assert SettleAcks in app.steps["consumer"]
