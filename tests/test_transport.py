"""The client's connections (cli/transport.py) against a real redis-server: replies
never answer the wrong command, a closed connection is replaced, refusals that last
fail at once, and commands are packed as redis-py packs them."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time

import pytest
import redis

from cli.transport import Broken, Link, retrying
from compiler_tasks.errors import RedisUnavailable
from compiler_tasks.protocol import resp
from compiler_tasks.settings import Settings
from tests.support.redis_server import RedisServer


def _link(url: str) -> Link:
    settings = dataclasses.replace(Settings(), redis_url=url)
    return Link(settings, url, name="transport-" + secrets.token_hex(3))


@pytest.mark.parametrize(
    "command",
    [("GET", "k"), ("HGET", "scssq:commit:projé:" + "c" * 40, "0123abcd"), ("INCR", "")],
)
def test_commands_are_packed_as_redis_py_packs_them(command: tuple[str, ...]) -> None:
    assert resp.encode(command) == b"".join(redis.Connection().pack_command(*command))


def test_replies_left_by_an_interrupted_call_never_answer_the_next(redis_server) -> None:
    admin = redis_server.client()
    admin.set("a", "1")
    admin.set("b", "2")
    link = _link(redis_server.url)
    assert link.call(("GET", "a")) == [b"1"]
    assert link.conn is not None
    link.conn.send(("GET", "a"))  # its reply is never read (an interrupt)
    assert link.call(("GET", "b")) == [b"2"]  # a new connection, not the stale reply
    link.close()


def test_a_connection_the_server_closed_is_replaced(redis_server) -> None:
    """Redis closed the idle connection (its ``timeout``, a restart): the next call of a
    warm client opens a new one instead of failing."""
    admin = redis_server.client(decode_responses=True)
    admin.set("k", "v")
    link = _link(redis_server.url)
    assert link.call(("GET", "k")) == [b"v"]
    (mine,) = [c for c in admin.client_list() if c.get("name") == link.name]
    admin.client_kill_filter(_id=mine["id"])
    conn, until = link.conn, time.monotonic() + 5
    assert conn is not None
    while conn.idle() and time.monotonic() < until:
        time.sleep(0.01)  # the close reaches this side
    assert link.call(("GET", "k")) == [b"v"]


def test_a_lasting_refusal_fails_at_once(redis_server) -> None:
    user, password = "u" + secrets.token_hex(3), secrets.token_hex(8)
    admin = redis_server.client()
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "+get", "+client|setname"
    )
    host_port = redis_server.url.split("://", 1)[1]
    link = _link(f"redis://{user}:wrong@{host_port}")
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="WRONGPASS"):
        retrying(lambda: link.call(("GET", "k")), link, started, started + 30, lambda _m: None)
    assert time.monotonic() - started < 5  # not retried until the deadline
    allowed = _link(f"redis://{user}:{password}@{host_port}")
    with pytest.raises(RedisUnavailable, match="NOPERM"):
        allowed.call(("SET", "k", "v"))
    assert allowed.call(("GET", "absent-" + secrets.token_hex(4))) == [None]  # still usable


def test_an_unreachable_redis_is_broken_then_unavailable_after_the_grace() -> None:
    link = _link("redis://127.0.0.1:1/0")
    with pytest.raises(Broken):
        link.call(("PING",))
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="unreachable"):
        retrying(lambda: link.call(("PING",)), link, started, started + 0.5, lambda _m: None)


def test_a_demoted_server_is_retried_until_it_accepts_the_write(redis_server) -> None:
    """A managed Redis's endpoint answering from the old primary, now a replica, during
    a failover: READONLY passes, and the write goes through once the server is the
    master again, within the deadline (docs/operations.md#managed-redis)."""
    replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(redis_server.port)))
    try:
        link = _link(replica.url)
        queue = "demoted-" + secrets.token_hex(4)
        with pytest.raises(Broken, match="READONLY"):
            link.call(("LPUSH", queue, "job"))
        promote = threading.Timer(0.5, replica.client().execute_command, ("REPLICAOF", "NO", "ONE"))
        promote.start()
        said: list[str] = []
        started = time.monotonic()
        replies = retrying(
            lambda: link.call(("LPUSH", queue, "job")), link, started, started + 20, said.append
        )
        promote.join()
        assert replies == [1]
        assert len(said) == 1 and "READONLY" in said[0] and "retrying" in said[0]
        link.close()
    finally:
        replica.stop()
