"""Lock safety on a real Redis: token-checked renew, release and completion."""

from __future__ import annotations

import json
import secrets
import time

import redis

from compiler_tasks.coordination.lock import Acquired, Lock, Outcome
from compiler_tasks.keys import RedisKeys

KEY = "c" * 64


def _keys() -> RedisKeys:
    return RedisKeys("t" + secrets.token_hex(4))


def test_one_holder_at_a_time(redis_server) -> None:
    client, keys = redis_server.client(), _keys()
    first, second = Lock(client, keys, KEY, 5000), Lock(client, keys, KEY, 5000)
    assert first.acquire()
    assert not second.acquire()
    assert first.release() is Outcome.DONE
    assert second.acquire()


def test_acquire_refuses_when_a_result_appeared_since_the_read(redis_server) -> None:
    client, keys = redis_server.client(), _keys()
    first, second = Lock(client, keys, KEY, 5000), Lock(client, keys, KEY, 5000)
    assert first.acquire(None) is Acquired.ACQUIRED  # both read "miss"
    assert first.complete({"status": "ok"}, {"status": "ok"}, 60) is Outcome.DONE
    assert second.acquire(None) is Acquired.RESULT_EXISTS  # read it instead of compiling
    assert client.get(keys.lock(KEY)) is None
    stale = client.get(keys.result(KEY))  # a result the caller read and found unusable
    assert second.acquire(stale) is Acquired.ACQUIRED


def test_stale_token_changes_nothing(redis_server) -> None:
    client, keys = redis_server.client(), _keys()
    stale = Lock(client, keys, KEY, 200)
    assert stale.acquire()
    time.sleep(0.3)  # expired: another holder takes over
    owner = Lock(client, keys, KEY, 5000)
    assert owner.acquire()
    pubsub = client.pubsub()
    pubsub.subscribe(keys.done(KEY))
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"

    assert stale.release() is Outcome.NOT_OWNER
    assert stale.renew() is Outcome.NOT_OWNER
    assert (
        stale.complete({"type": "done", "result": {"by": "stale"}}, {"by": "stale"}, 60)
        is Outcome.NOT_OWNER
    )
    assert client.get(keys.lock(KEY)) == owner.token.encode()
    assert 4000 < client.pttl(keys.lock(KEY)) <= 5000  # not extended, not shortened
    assert client.get(keys.result(KEY)) is None
    assert pubsub.get_message(timeout=0.2) is None  # nothing announced

    assert (
        owner.complete({"type": "done", "result": {"by": "owner"}}, {"by": "owner"}, 60)
        is Outcome.DONE
    )
    assert json.loads(client.get(keys.result(KEY))) == {"by": "owner"}
    assert client.exists(keys.lock(KEY)) == 0
    msg = pubsub.get_message(timeout=1)
    assert json.loads(msg["data"])["result"] == {"by": "owner"}


def test_renewal_keeps_the_lock_past_its_ttl(redis_server) -> None:
    client, keys = redis_server.client(), _keys()
    lock = Lock(client, keys, KEY, 300)
    assert lock.acquire()
    for _ in range(6):  # 6 x 100 ms = two TTLs
        time.sleep(0.1)
        assert lock.renew() is Outcome.DONE
    assert client.get(keys.lock(KEY)) == lock.token.encode()


def test_failure_completion_publishes_without_caching(redis_server) -> None:
    client, keys = redis_server.client(), _keys()
    lock = Lock(client, keys, KEY, 5000)
    assert lock.acquire()
    assert lock.complete({"type": "done", "result": {"status": "failed"}}, None, 60) is Outcome.DONE
    assert client.get(keys.result(KEY)) is None
    assert client.exists(keys.lock(KEY)) == 0


def test_result_expires_after_retention(redis_server) -> None:
    client: redis.Redis = redis_server.client()
    keys = _keys()
    lock = Lock(client, keys, KEY, 5000)
    assert lock.acquire()
    lock.complete({"type": "done", "result": {}}, {"status": "ok"}, 123)
    assert 0 < client.ttl(keys.result(KEY)) <= 123
