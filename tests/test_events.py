"""Waiting: no lost wake-up, and no polling while a wait is capped by a long TTL."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from compiler_tasks.coordination.events import Waiter
from compiler_tasks.coordination.lock import Lock
from compiler_tasks.errors import FleetTimeout
from compiler_tasks.keys import RedisKeys

KEY = "e" * 64


def _keys() -> RedisKeys:
    return RedisKeys("t" + secrets.token_hex(4))


def test_completion_between_subscribe_and_read_is_not_lost(redis_server) -> None:
    """A failure (published, never cached) lands right after the subscription is
    confirmed and before the result read: only the subscription can see it."""
    client, keys = redis_server.client(), _keys()
    holder = Lock(client, keys, KEY, 5000)
    assert holder.acquire()
    waiter = Waiter(client, keys, KEY)

    def complete_in_the_window() -> None:
        failure = {"status": "failed", "kind": "timeout", "message": "compile exceeded 1 s"}
        holder.complete({"type": "done", "result": failure}, None, 60)

    waiter.before_read = complete_in_the_window
    deadline = time.monotonic() + 5
    assert waiter.subscribe(deadline) is None  # nothing cached
    result = waiter.wait(deadline, cap=30)
    assert result["message"] == "compile exceeded 1 s"
    waiter.close()


def test_cached_result_found_by_the_read(redis_server) -> None:
    client, keys = redis_server.client(), _keys()
    holder = Lock(client, keys, KEY, 5000)
    holder.acquire()
    holder.complete({"type": "done", "result": {"status": "ok"}}, {"status": "ok"}, 60)
    with Waiter(client, keys, KEY) as waiter:
        assert waiter.subscribe(time.monotonic() + 5) == {"status": "ok"}


def _commands_from(monitor_lines: list[str], addrs: set[str]) -> list[str]:
    return [line for line in monitor_lines if any(f" {a}]" in line for a in addrs)]


def test_waiter_sends_no_commands_while_waiting(redis_server) -> None:
    """With a production-like cap (30 s), the waiter's own connections stay silent
    for 5 s; counted with MONITOR on the connections named by CLIENT SETNAME."""
    name = "waiter-" + secrets.token_hex(3)
    client = redis_server.client(client_name=name)
    keys = _keys()
    holder = Lock(redis_server.client(), keys, KEY, 30_000)
    assert holder.acquire()  # someone is compiling: the waiter must just wait
    waiter = Waiter(client, keys, KEY)
    deadline = time.monotonic() + 20
    assert waiter.subscribe(deadline) is None
    got: dict = {}
    thread = threading.Thread(target=lambda: got.update(waiter.wait(deadline, cap=30)))
    thread.start()
    time.sleep(0.3)
    admin = redis_server.client(decode_responses=True)
    addrs = {c["addr"] for c in admin.client_list() if c.get("name") == name}
    assert len(addrs) >= 1  # the pub/sub connection is named too

    lines: list[str] = []
    monitor_client = redis_server.client(decode_responses=True)
    with monitor_client.monitor() as monitor:
        stop = time.monotonic() + 5
        conn = monitor.connection
        while time.monotonic() < stop:
            if conn.can_read(timeout=0.2):
                lines.append(str(conn.read_response()))
        # Sanity: a command on the waiter's own client is seen by this gauge.
        sentinel = "sentinel-" + name
        client.get(sentinel)
        while not any(sentinel in line for line in lines):
            lines.append(str(conn.read_response()))
    polled = _commands_from(lines, addrs)
    assert len(polled) == 1 and sentinel in polled[0], f"waiter sent: {polled[:5]}"

    holder.complete({"type": "done", "result": {"status": "ok", "n": 1}}, {"status": "ok"}, 60)
    thread.join(5)
    assert got == {"status": "ok", "n": 1}
    waiter.close()


def test_wait_rechecks_once_per_cap_and_reports_a_vanished_lock(redis_server) -> None:
    client, keys = redis_server.client(), _keys()
    holder = Lock(client, keys, KEY, 400)
    assert holder.acquire()  # then "dies": never renews
    idle: list[bool] = []
    with Waiter(client, keys, KEY) as waiter:
        deadline = time.monotonic() + 1.5
        assert waiter.subscribe(deadline) is None
        with pytest.raises(FleetTimeout):
            waiter.wait(deadline, cap=0.5, on_idle=idle.append)
    assert idle[0] is False  # after one cap the lock is gone: caller may re-enqueue
    assert 1 <= len(idle) <= 3
