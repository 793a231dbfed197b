"""What :mod:`bench.capacity` reads its figures from: Redis's own counters, moto's request
log, and ``scssq submit`` processes run one after another or in concurrent loops.

* :func:`snapshot` takes one ``INFO stats commandstats cpu memory clients keyspace``
  (a single command, so a snapshot costs the same every time); :func:`diff` of two
  snapshots gives the commands by name (``INFO`` itself left out), the bytes Redis
  read and wrote (``total_net_input_bytes`` / ``total_net_output_bytes``), its CPU
  (``used_cpu_user + used_cpu_sys``), ``used_memory``, clients and keys.
  :func:`per_submit` takes off what the snapshots themselves cost (the reply to the
  first ``INFO`` is counted between the two) and the fleet's background traffic
  (workers' ``BRPOP`` timeouts, heartbeats, events) at a rate measured while idle.
* :class:`S3Log` reads the request lines that moto's server writes (one per HTTP
  request, with its status) and sorts them by operation: ``GET``, ``PUT``, ``HEAD``,
  ``LIST`` (a ``GET`` of the bucket), ``POST``, ``DELETE``.
* :func:`run_submits` runs real ``scssq submit`` processes one at a time and checks each
  one's outcome (``cached``, ``compiled``, ``shared``); :func:`hit_loops` runs ``loops``
  of them concurrently for a while and counts how many finished.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import bundles

_SECTIONS = ("INFO", "stats", "commandstats", "cpu", "memory", "clients", "keyspace")


@dataclass
class Snapshot:
    """Redis's counters at one moment (``when``: monotonic seconds)."""

    when: float
    commands: dict[str, int]
    net_in: int
    net_out: int
    cpu: float
    memory: int
    clients_memory: int
    clients: int
    keys: int


def snapshot(client: redis.Redis) -> Snapshot:
    info: dict[str, Any] = client.execute_command(*_SECTIONS)
    commands = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in info.items()
        if name.startswith("cmdstat_") and name != "cmdstat_info"
    }
    keys = sum(int(v["keys"]) for k, v in info.items() if re.fullmatch(r"db\d+", k))
    return Snapshot(
        when=time.monotonic(),
        commands=commands,
        net_in=int(info["total_net_input_bytes"]),
        net_out=int(info["total_net_output_bytes"]),
        cpu=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        memory=int(info["used_memory"]),
        clients_memory=int(info.get("mem_clients_normal", 0)),
        clients=int(info["connected_clients"]),
        keys=keys,
    )


@dataclass
class Delta:
    """What happened between two snapshots."""

    seconds: float
    commands: Counter[str]
    net_in: int
    net_out: int
    cpu: float
    memory: int
    keys: int

    @property
    def total(self) -> int:
        return sum(self.commands.values())


def diff(before: Snapshot, after: Snapshot) -> Delta:
    commands: Counter[str] = Counter()
    for name, calls in after.commands.items():
        if calls - before.commands.get(name, 0):
            commands[name] = calls - before.commands.get(name, 0)
    return Delta(
        seconds=after.when - before.when,
        commands=commands,
        net_in=after.net_in - before.net_in,
        net_out=after.net_out - before.net_out,
        cpu=after.cpu - before.cpu,
        memory=after.memory - before.memory,
        keys=after.keys - before.keys,
    )


def overhead(client: redis.Redis, samples: int = 5) -> Delta:
    """What a snapshot costs: the smallest of ``samples`` back-to-back deltas."""
    shots = [snapshot(client) for _ in range(samples + 1)]
    deltas = [diff(a, b) for a, b in itertools.pairwise(shots)]
    return min(deltas, key=lambda d: (d.net_out, d.net_in))


def idle(client: redis.Redis, seconds: float) -> Delta:
    """The background traffic of ``seconds`` with nothing submitted."""
    before = snapshot(client)
    time.sleep(seconds)
    return diff(before, snapshot(client))


def per_submit(delta: Delta, cost: Delta, background: Delta | None, count: int) -> dict[str, Any]:
    """Commands (by name and in all), bytes and Redis CPU per submit, with the snapshots'
    own cost and ``background`` (scaled to ``delta``'s length) taken off."""
    scale = 0.0 if background is None else delta.seconds / background.seconds
    idle_cmds = background.commands if background is not None else Counter()
    commands = {
        name: (calls - idle_cmds.get(name, 0) * scale) / count
        for name, calls in sorted(delta.commands.items())
    }
    commands = {k: round(v, 2) for k, v in commands.items() if round(v, 2) > 0}

    def rate(attr: str) -> float:
        own = getattr(cost, attr)  # every delta holds one snapshot's cost
        base = (getattr(background, attr) - own) * scale if background is not None else 0.0
        return float((getattr(delta, attr) - own - base) / count)

    return {
        "count": count,
        "commands": round(sum(commands.values()), 1),
        "by_command": commands,
        "bytes_in": round(rate("net_in")),
        "bytes_out": round(rate("net_out")),
        "redis_cpu_us": round(rate("cpu") * 1e6, 1),
    }


#: A request line of moto's (werkzeug's) log, colours and all.
_REQUEST = re.compile(r'"(?:\x1b\[[\d;]*m)*([A-Z]+) (\S+) HTTP/[\d.]+(?:\x1b\[[\d;]*m)*" (\d{3})')


@dataclass
class S3Log:
    """Counts the requests moto logged after :meth:`mark`, by operation and status."""

    path: Path
    offset: int = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since(self, settle: float = 0.3) -> Counter[str]:
        """Requests since :meth:`mark`: ``"GET"``, ``"PUT 412"`` (non-2xx apart), ..."""
        time.sleep(settle)  # the server logs after it answered
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode("utf-8", "replace")
        counts: Counter[str] = Counter()
        for method, target, status in _REQUEST.findall(text):
            if "/moto-api" in target:
                continue
            op = method
            path = target.split("?", 1)[0].strip("/")
            if method == "GET" and "/" not in path:
                op = "LIST"
            counts[op if status.startswith("2") else f"{op} {status}"] += 1
        return counts


@dataclass
class Submit:
    """One ``scssq submit`` of a bundle folder, for a commit, into an output folder, by
    the executable ``scssq`` (the client as a runner installs it: :mod:`bench.capacity`)."""

    src: Path
    commit: str
    out: Path
    env: dict[str, str]
    scssq: str

    def argv(self) -> list[str]:
        return bundles.submit_argv(self.scssq, self.commit, self.src, self.out)

    def run(self, timeout: float = 300) -> tuple[str, float]:
        """Run it; returns its outcome word and wall seconds; raises if it failed."""
        started = time.perf_counter()
        proc = subprocess.run(
            self.argv(),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        took = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"scssq submit exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc.stdout.split(maxsplit=1)[0], took


def run_submits(submits: list[Submit], expect: str) -> list[float]:
    """Run each submit in turn; every one must report ``expect``; returns their walls."""
    walls = []
    for sub in submits:
        outcome, took = sub.run()
        if outcome != expect:
            raise RuntimeError(f"expected {expect}, got {outcome} ({sub.src.name})")
        walls.append(took)
    return walls


@dataclass
class LoopResult:
    """What ``loops`` concurrent submit loops did."""

    loops: int
    seconds: float
    done: int
    walls: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def hit_loops(make: Any, loops: int, seconds: float) -> LoopResult:
    """``loops`` threads, each running ``make(i)``'s submit again and again for
    ``seconds`` (none starts after that); submits per second until the last one ended."""
    result = LoopResult(loops, 0.0, 0)
    lock = threading.Lock()
    errors: list[BaseException] = []
    started = time.perf_counter()
    deadline = started + seconds

    def loop(i: int) -> None:
        sub: Submit = make(i)
        try:
            while time.perf_counter() < deadline:
                outcome, took = sub.run()
                with lock:
                    result.done += 1
                    result.walls.append(took)
                    result.outcomes[outcome] += 1
        except BaseException as e:  # reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} submit loops failed: {errors[0]}")
    return result


def key_memory(client: redis.Redis, prefix: str) -> dict[str, dict[str, float]]:
    """``MEMORY USAGE`` of every key under ``prefix:``, by kind (the name's next part:
    ``result``, ``commit``, ...): how many keys, and their mean size in bytes."""
    sizes: dict[str, list[int]] = {}
    for name in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = name.decode().split(":")[1]
        usage = client.memory_usage(name, samples=0)
        if usage is not None:
            sizes.setdefault(kind, []).append(int(usage))
    return {
        kind: {"keys": len(v), "bytes": round(sum(v) / len(v), 1)}
        for kind, v in sorted(sizes.items())
    }


def redis_benchmark(
    client: redis.Redis, port: int, requests: int, reconnect: bool
) -> dict[str, Any]:
    """``redis-benchmark -t get`` (4 connections; ``reconnect``: a new one per request,
    ``-k 0``): Redis CPU per ``GET``, and the rate the benchmark reached."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "get"]
    argv += ["-n", str(requests), "-c", "4", "-q", "-k", "0" if reconnect else "1"]
    before = snapshot(client)
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    took = time.perf_counter() - started
    delta = diff(before, snapshot(client))
    return {
        "reconnect": reconnect,
        "requests": requests,
        "per_s": requests / took,
        "redis_cpu_us": delta.cpu / requests * 1e6,
    }


#: The round trips of a hit (:mod:`cli.client`): the engine version; the result
#: and the commit mapping; the hit counter.
HIT_TRIPS = (1, 2, 1)


def capture_hit(url: str, sub: Submit) -> list[list[list[str]]]:
    """The commands one ``scssq submit`` hit sends (read with ``MONITOR``), in its round
    trips."""
    from bench.monitor import Recorder

    recorder = Recorder(url).start()
    outcome, _ = sub.run()
    commands = recorder.stop()
    if outcome != "cached":
        raise RuntimeError(f"expected a hit, got {outcome}")
    addr = next(c.addr for c in commands if c.args[:1] == ["HGET"] and "engines" in c.args[1])
    sent = [c.args for c in commands if c.addr == addr]
    if len(sent) != sum(HIT_TRIPS):
        raise RuntimeError(f"a hit sent {sent}, not {sum(HIT_TRIPS)} commands")
    trips, at = [], 0
    for size in HIT_TRIPS:
        trips.append(sent[at : at + size])
        at += size
    return trips


def _replay(job: tuple[str, list[list[list[str]]], int]) -> int:
    """``count`` hits' commands, each on a new connection, as fast as one process can."""
    from compiler_tasks.protocol.resp import RespConnection
    from compiler_tasks.settings import Settings

    url, trips, count = job
    settings = Settings.from_env({"SCSSQ_REDIS_URL": url})
    for _ in range(count):
        with RespConnection.open(settings, 5.0) as conn:
            for trip in trips:
                conn.call(*trip)
    return count


def replay_hits(
    client: redis.Redis, url: str, trips: list[list[list[str]]], count: int, procs: int
) -> dict[str, Any]:
    """A hit's own commands replayed ``count`` times from ``procs`` processes: the hits
    per second and the Redis CPU per hit when the clients cost no process start."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        pool.map(_replay, [(url, trips, 10)] * procs)  # started and imported
        before = snapshot(client)
        started = time.perf_counter()
        done = sum(pool.map(_replay, [(url, trips, count // procs)] * procs))
        took = time.perf_counter() - started
        delta = diff(before, snapshot(client))
    return {
        "procs": procs,
        "hits": done,
        "per_s": done / took,
        "redis_cpu_us": delta.cpu / done * 1e6,
        "commands": delta.total / done,
    }
