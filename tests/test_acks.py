"""Acks that did not reach Redis are sent again (compiler_tasks/acks.py).

kombu's own Redis transport on a real redis-server, behind a loopback proxy that
partitions it: every connection silently dead, new ones too, until it heals.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.message import Message

from compiler_tasks.acks import Unsettled
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
    unsettled = Unsettled()
    unsettled.watch(b.message, None)
    proxy.partition()
    b.message.ack_log_error(log, b.errors)  # what Celery runs: logs the failure, goes on
    assert not b.message.acknowledged and b.unacked()
    assert not b.consumes()  # at prefetch 1, this consumer would never consume again
    assert unsettled.settle(b.errors) == 0  # first tick: Celery's ack may not have run yet
    assert unsettled.settle(b.errors) == 1  # second: sent again, Redis still away
    assert b.unacked() and not b.consumes()
    proxy.heal()
    assert unsettled.settle(b.errors) == 0
    assert b.message.acknowledged and not b.unacked() and b.consumes()
    assert not unsettled.watched


def test_an_ack_that_went_through_is_forgotten_not_sent_twice(
    broker: tuple[Broker, TcpProxy],
) -> None:
    b, _ = broker
    unsettled = Unsettled()
    unsettled.watch(b.message, None)
    b.message.ack_log_error(log, b.errors)
    assert b.message.acknowledged and not b.unacked()
    assert unsettled.settle(b.errors) == 0
    assert not unsettled.watched  # a second ack would raise MessageStateError


def test_a_tick_before_celerys_own_ack_ran_does_not_send_it(
    broker: tuple[Broker, TcpProxy],
) -> None:
    """Celery sends an ack on the event loop's next turn: a timer tick may come first."""
    b, _ = broker
    unsettled = Unsettled()
    unsettled.watch(b.message, None)
    unsettled.settle(b.errors)
    b.message.ack_log_error(log, b.errors)  # MessageStateError, had the tick sent it
    assert b.message.acknowledged and not b.unacked()


def test_a_failed_requeue_is_sent_again_and_puts_the_message_back(
    broker: tuple[Broker, TcpProxy],
) -> None:
    b, proxy = broker
    unsettled = Unsettled()
    unsettled.watch(b.message, True)
    proxy.partition()
    b.message.reject_log_error(log, b.errors, requeue=True)
    assert not b.message.acknowledged and b.redis.llen(b.queue.name) == 0
    unsettled.settle(b.errors)
    proxy.heal()
    assert unsettled.settle(b.errors) == 0
    assert b.redis.llen(b.queue.name) == 1 and not b.unacked() and b.consumes()


def test_a_message_whose_channel_closed_is_dropped_and_back_in_its_queue(
    broker: tuple[Broker, TcpProxy],
) -> None:
    """A consumer restart closes the channel, and kombu restores its unacked messages."""
    b, proxy = broker
    unsettled = Unsettled()
    unsettled.watch(b.message, None)
    proxy.partition()
    b.message.ack_log_error(log, b.errors)
    proxy.heal()
    b.channel.close()
    assert b.redis.llen(b.queue.name) == 1 and not b.unacked()
    unsettled.settle(b.errors)
    assert unsettled.settle(b.errors) == 0 and not unsettled.watched
    assert b.redis.llen(b.queue.name) == 1  # the late ack did not take it away again
