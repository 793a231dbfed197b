"""The submitter side of the herd benchmark: one process holding many waiter threads.

:mod:`bench.herd` starts a few of these processes (``multiprocessing`` spawn) and sends
each round over a pipe: which variant, how many threads, their client names, the
wall-clock instant they all start at. Every waiter is a thread with its own Redis
connection(s) named by ``CLIENT SETNAME`` (so :mod:`bench.herd` can count its commands
with ``MONITOR``). Variants:

* ``scssq``: the client API, ``cli.client.submit()`` with its own ``Client``;
  ``Wait.run`` (:mod:`cli.wait`) is wrapped to stamp when the wait began and when it
  woke up.
* ``poll``: the seed service's shape: ``GET`` the result key every ``interval`` s (first
  poll at a random phase), then read the artifact from the store.
* ``raw``: the floor: plain redis-py pub/sub, ``SUBSCRIBE`` then ``get_message`` until
  the one message arrives, ``json.loads`` it; then, like every waiter, it reads the CSS
  named in the message from the store and writes it.

Each waiter stamps its wake-up, then passes a :class:`Gate` that holds it until every
waiter of its process has woken: work after waking never delays another waiter's stamp,
so the variants compare their wake paths on equal terms.

Imports that cost time (the client; redis-py and the store for the baselines) happen
before the first round; every stamp is ``time.time()`` (the clock ``MONITOR`` uses).
"""

from __future__ import annotations

import json
import random
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis

from bench import bundles
from cli import client as client_api
from cli import wait as wait_api
from compiler_tasks.settings import Settings
from compiler_tasks.store import open_store

_stamps = threading.local()


class Gate:
    """Holds each woken waiter until every waiter of the round, in every runner process,
    has woken (or ``timeout`` s passed).

    Wake-up is stamped before the gate, the work after waking (mapping check, stats,
    download) happens after it: so one waiter's download never delays another's wake-up
    stamp, in every variant alike, and the variants compare their wake paths themselves.
    The count and the event live in shared memory (``multiprocessing``); the parent
    resets them before each round.
    """

    def __init__(self, count: Any, done: Any, timeout: float = 10.0) -> None:
        self.count = count
        self.done = done
        self.parties = 0
        self.timeout = timeout

    def arrive(self, wait: bool = True) -> None:
        if getattr(_stamps, "arrived", True):
            return
        _stamps.arrived = True
        with self.count.get_lock():
            self.count.value += 1
            if self.count.value >= self.parties:
                self.done.set()
        if wait:
            self.done.wait(self.timeout)


_gate: Gate


def _instrument() -> None:
    """Stamp the client's wait (start, wake-up) and count compile tasks sent, per thread."""
    original_wait = wait_api.Wait.run

    def wait(self: wait_api.Wait, *args: Any, **kwargs: Any) -> dict[str, Any]:
        _stamps.wait = time.time()
        result = original_wait(self, *args, **kwargs)
        _stamps.wake = time.time()
        _gate.arrive()
        return result

    wait_api.Wait.run = wait  # type: ignore[method-assign]
    original_send = client_api.Submit.send

    def send(self: client_api.Submit) -> None:
        _stamps.sends = getattr(_stamps, "sends", 0) + 1
        original_send(self)

    client_api.Submit.send = send  # type: ignore[method-assign]


def _sleep_until(at: float) -> None:
    while (left := at - time.time()) > 0:
        time.sleep(min(left, 0.05))


def _scssq(job: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    settings = Settings.from_env()
    client = client_api.Client(settings, name=name)
    config = bundles.config(Path(job["src"]), Path(job["out"]) / str(index))
    _stamps.wait = _stamps.wake = None
    _stamps.sends = 0
    _sleep_until(job["start_at"])
    started = time.time()
    try:
        res = client_api.submit(client, config, job["commit"], timeout=job["timeout"])
        outcome = res.outcome
    finally:
        _gate.arrive(wait=False)  # a waiter that never waited (a hit) must not hold the gate
        client.close()
    return {
        "start": started,
        "wait": _stamps.wait,
        "wake": _stamps.wake,
        "done": time.time(),
        "outcome": outcome,
        "sends": _stamps.sends,
    }


def _poll(job: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    settings = Settings.from_env()
    conn = redis.Redis.from_url(settings.redis_url, client_name=name)
    store = open_store(settings.store_url)
    interval = float(job["interval"])
    rng = random.Random(index)
    _sleep_until(job["start_at"])
    started = time.time()
    time.sleep(rng.uniform(0, interval))  # each CI job started at its own moment
    polls = 0
    while True:
        raw = conn.get(job["result_key"])
        polls += 1
        if raw is not None:
            woke = time.time()
            _gate.arrive()
            result = json.loads(raw)
            out = Path(job["out"]) / str(index)
            for entry, info in result["outputs"].items():
                target = out / Path(entry).with_suffix(".css")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(store.get(info["css"]))
            break
        if time.time() - started > job["timeout"]:
            raise TimeoutError(f"{name}: no result after {job['timeout']} s")
        time.sleep(interval)
    conn.close()
    return {"start": started, "wait": started, "wake": woke, "done": time.time(), "polls": polls}


def _raw(job: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    settings = Settings.from_env()
    conn = redis.Redis.from_url(settings.redis_url, client_name=name)
    pubsub = conn.pubsub()
    _sleep_until(job["start_at"])
    started = time.time()
    pubsub.subscribe(job["channel"])
    deadline = time.monotonic() + job["timeout"]
    while time.monotonic() < deadline:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=job["timeout"])
        if msg is not None:
            woke = time.time()
            artifact = json.loads(msg["data"])["css"]
            _gate.arrive()
            break
    else:
        raise TimeoutError(f"{name}: no message after {job['timeout']} s")
    if job.get("fetch", True):  # then, like every waiter, fetch the CSS
        target = Path(job["out"]) / str(index) / "main.css"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(open_store(settings.store_url).get(artifact))
    pubsub.close()
    conn.close()
    return {"start": started, "wait": started, "wake": woke, "done": time.time()}


VARIANTS = {"scssq": _scssq, "poll": _poll, "raw": _raw}


def run_round(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One round: a thread per name in ``job["names"]``; returns one record per waiter."""
    fn = VARIANTS[job["variant"]]
    records: list[dict[str, Any]] = [{} for _ in job["names"]]

    _gate.parties = int(job["parties"])

    def waiter(slot: int, name: str, index: int) -> None:
        _stamps.arrived = False
        try:
            records[slot] = {"name": name, **fn(job, name, index)}
        except Exception as e:  # reported, not raised: the round's other waiters go on
            records[slot] = {"name": name, "error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
        finally:
            _gate.arrive(wait=False)

    threads = [
        threading.Thread(target=waiter, args=(slot, name, index), daemon=True)
        for slot, (name, index) in enumerate(zip(job["names"], job["indexes"], strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(job["timeout"] + 30)
    return records


def serve(conn: Connection, count: Any, done: Any, cpus: set[int] | None = None) -> None:
    """Entry point of a runner process: answer rounds until ``None`` arrives.

    ``count`` (a shared ``Value``) and ``done`` (a shared ``Event``) make the :class:`Gate`;
    ``cpus`` pins the process (``--pin``).
    """
    import os

    import compiler_tasks.app  # noqa: F401  (Celery, imported once like in a warm CI runner)

    if cpus:
        os.sched_setaffinity(0, cpus)

    global _gate
    _gate = Gate(count, done)
    _instrument()
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(run_round(job))
