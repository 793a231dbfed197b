"""The service's Redis connections on a connection that died silently (no FIN or RST)."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from compiler_tasks.coordination.connections import redis_client
from compiler_tasks.settings import Settings
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def _settings(port: int, reply_timeout: float) -> Settings:
    return Settings.from_env(
        {
            "SCSSQ_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "SCSSQ_REDIS_REPLY_TIMEOUT": str(reply_timeout),
        }
    )


def test_a_command_on_a_silently_dead_connection_fails_then_reconnects(
    redis_server: RedisServer,
) -> None:
    """The GET fails after SCSSQ_REDIS_REPLY_TIMEOUT (not redis-py's own 5 s default,
    nor never, as with redis-py before 8), and the next command reconnects."""
    proxy = TcpProxy(redis_server.port)
    key = "conn-test:" + secrets.token_hex(4)
    try:
        client = redis_client(_settings(proxy.port, 2), "conn-test")
        client.set(key, "1", ex=60)
        assert proxy.freeze() == 1
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.get(key)
        assert 1.5 < time.monotonic() - started < 4
        assert client.get(key) == b"1"  # on a new connection
    finally:
        proxy.close()


def test_a_wait_on_a_subscription_outlasts_the_reply_timeout(redis_server: RedisServer) -> None:
    """A waiter's blocking read has its own timeout: a quiet channel is not an error."""
    client = redis_client(_settings(redis_server.port, 2), "conn-test")
    channel = "conn-test:" + secrets.token_hex(4)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        started = time.monotonic()
        assert pubsub.get_message(timeout=3.5) is None
        assert time.monotonic() - started >= 3.4
        client.publish(channel, "done")
        assert pubsub.get_message(timeout=2)["data"] == b"done"
    finally:
        pubsub.close()
