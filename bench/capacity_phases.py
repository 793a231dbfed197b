"""The four measurements of :mod:`bench.capacity`, each on the rig's fleets and one Redis.

* :func:`hits`: sustained cache hits per second from ``loops`` concurrent loops of real
  ``scssq submit`` processes on one mapped commit (workers paused: a hit never reaches
  them), with Redis's commands, bytes and CPU per hit;
* :func:`misses`: distinct bundles per second through N workers (queued while paused,
  timed from resume to the last ``done``: :func:`bench.throughput.fleet_round`), with the
  workers' and Redis's CPU per miss and ``used_memory`` per result stored;
* :func:`account`: one submit after another of each kind (miss, hit of a new commit, hit
  of a mapped commit): Redis commands and bytes, S3 requests by operation, memory;
* :func:`waiters`: ``used_memory`` and connections per client waiting on pub/sub for a
  compile in progress (its worker frozen with the lock held), then the wake-up.
"""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import bundles
from bench.capacity_probe import (
    Submit,
    capture_hit,
    diff,
    hit_loops,
    idle,
    per_submit,
    redis_benchmark,
    replay_hits,
    run_submits,
    snapshot,
)
from bench.common import percentile
from bench.peers_tools import tree_cpu
from bench.throughput import fleet_round

if TYPE_CHECKING:
    from bench.capacity import Rig
    from bench.fleet import BenchFleet

Maker = Callable[[Path, int], Path]
SHEETS: dict[str, Maker] = {"small": bundles.small, "bootstrap": bundles.bootstrap}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def calibrate(rig: Rig, requests: int) -> list[dict[str, Any]]:
    """redis-benchmark's plain ``GET`` on the same Redis (workers paused): the unit that
    a submit's Redis CPU is compared with, kept alive and with a connection each."""
    with rig.running():
        return [redis_benchmark(rig.redis, rig.port, requests, r) for r in (False, True)]


def hits(
    rig: Rig, sheet: str, levels: list[int], seconds: float, reps: int, replay: int
) -> dict[str, Any]:
    """Hits per second at each concurrency, ``reps`` times in rotating order; and a hit's
    commands replayed ``replay`` times from 2 processes, once per repetition."""
    fleet = rig.fleets["two"]
    src = SHEETS[sheet](rig.tmp / "hit-src", 0)
    commit = bundles.commit()

    def make(i: int) -> Submit:
        return rig.submit(fleet, src, commit, rig.tmp / "hit-out" / str(i))

    run_submits([make(0)], "compiled")
    run_submits([make(0)], "cached")
    samples: list[dict[str, Any]] = []
    replays: list[dict[str, Any]] = []
    with rig.running():
        trips = capture_hit(rig.url, make(0))
        background = idle(rig.redis, rig.idle_seconds)
        for rep in range(reps):
            for level in levels[rep % len(levels) :] + levels[: rep % len(levels)]:
                before, cpu = snapshot(rig.redis), _children_cpu()
                loops = hit_loops(make, level, seconds)
                delta = diff(before, snapshot(rig.redis))
                if set(loops.outcomes) != {"cached"}:
                    raise RuntimeError(f"hit loops saw {dict(loops.outcomes)}")
                samples.append(
                    {
                        "loops": level,
                        "rep": rep,
                        "done": loops.done,
                        "seconds": loops.seconds,
                        "per_s": loops.per_second,
                        "wall_p50": percentile(loops.walls, 50),
                        "client_cpu": (_children_cpu() - cpu) / loops.done,
                        **per_submit(delta, rig.cost, background, loops.done),
                    }
                )
                print(f"hits: {level} loops, {loops.per_second:.1f}/s", flush=True)
            replays.append(replay_hits(rig.redis, rig.url, trips, replay, 2))
            print(f"hits replayed: {replays[-1]['per_s']:.0f}/s", flush=True)
    return {"sheet": sheet, "samples": samples, "replays": replays, "idle": background.__dict__}


def _sources(rig: Rig, sheet: str, count: int) -> list[Path]:
    base = rig.next_variant(count)
    return [SHEETS[sheet](rig.tmp / f"{sheet}-{base + i}", base + i) for i in range(count)]


def _round(rig: Rig, fleet: BenchFleet, sheet: str, count: int) -> dict[str, Any]:
    sources = _sources(rig, sheet, count)
    with rig.running(fleet):
        before, workers = snapshot(rig.redis), tree_cpu(fleet.worker_pids())
        took, _ = fleet_round(fleet, sources, rig.tmp)
        delta = diff(before, snapshot(rig.redis))
        spent = tree_cpu(fleet.worker_pids()) - workers
    return {
        "count": count,
        "seconds": took,
        "per_s": count / took,
        "worker_cpu": spent / count,
        "redis_cpu_us": delta.cpu / count * 1e6,
        "memory_per_result": delta.memory / count,
        "keys_per_result": delta.keys / count,
    }


def misses(rig: Rig, sheets: dict[str, int], reps: int) -> dict[str, Any]:
    """Per sheet, ``reps`` rounds of ``count`` distinct misses with 1 and with 2 workers."""
    fleets = {1: rig.fleets["one"], 2: rig.fleets["two"]}
    out: dict[str, Any] = {}
    for sheet, count in sheets.items():
        for fleet in fleets.values():  # warm: engines started, sources read once
            _round(rig, fleet, sheet, 2)
        samples = []
        for rep in range(reps):
            for n in (1, 2) if rep % 2 == 0 else (2, 1):
                sample = {"workers": n, "rep": rep, **_round(rig, fleets[n], sheet, count)}
                samples.append(sample)
                print(f"misses: {sheet}, {n} workers, {sample['per_s']:.2f}/s", flush=True)
        out[sheet] = samples
    return out


def _log_count(fleet: BenchFleet, task: str) -> int:
    text = fleet.fleet.full_logs()
    return sum(1 for line in text.splitlines() if f"Task {task}[" in line and "succeeded" in line)


def _settle(fleet: BenchFleet, task: str, expected: int, timeout: float = 120) -> None:
    """Wait until the workers logged ``expected`` successes of ``task`` (no Redis command)."""
    deadline = time.monotonic() + timeout
    while _log_count(fleet, task) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{task}: {_log_count(fleet, task)}/{expected}:\n{fleet.logs()}")
        time.sleep(0.1)
    time.sleep(0.5)  # the ack and the task-succeeded event follow the log line


def _batch(
    rig: Rig, fleet: BenchFleet, submits: list[Submit], expect: str, task: str | None
) -> dict[str, Any]:
    """Run ``submits`` one by one; Redis, S3 and the workers' CPU per submit, with the
    background taken off when the workers run (``task``: what they do for each submit)."""
    logged = _log_count(fleet, task) if task else 0
    pids = fleet.worker_pids()
    idle_cpu = tree_cpu(pids)
    background = idle(rig.redis, rig.idle_seconds) if task else None
    idle_cpu = (tree_cpu(pids) - idle_cpu) / background.seconds if background else 0.0
    with rig.running(fleet) if task else rig.running():
        rig.s3log.mark()
        before, workers = snapshot(rig.redis), tree_cpu(pids)
        walls = run_submits(submits, expect)
        if task:
            _settle(fleet, task, logged + len(submits))
        delta = diff(before, snapshot(rig.redis))
        spent = tree_cpu(pids) - workers - idle_cpu * delta.seconds
    s3 = rig.s3log.since()
    n = len(submits)
    css = submits[-1].out / "main.css"
    return {
        **per_submit(delta, rig.cost, background, n),
        "s3": {op: round(c / n, 2) for op, c in sorted(s3.items())},
        "memory": delta.memory / n,
        "keys": delta.keys / n,
        "worker_cpu": max(spent, 0.0) / n,
        "wall_p50": percentile(walls, 50),
        "css_bytes": css.stat().st_size,
    }


def account(rig: Rig, name: str, count: int, reps: int, bootstrap: int) -> dict[str, Any]:
    """Per submit kind on fleet ``name``: Redis commands and bytes, S3 requests, memory."""
    fleet = rig.fleets[name]
    out: dict[str, list[dict[str, Any]]] = {}
    tmp = rig.tmp / f"account-{name}"
    with rig.running(fleet):
        mapped_src = bundles.small(tmp / "mapped", rig.next_variant(1))
        mapped = bundles.commit()
        run_submits([rig.submit(fleet, mapped_src, mapped, tmp / "out")], "compiled")
        _settle(fleet, "scssq.compile", _log_count(fleet, "scssq.compile"))
        kinds: list[tuple[str, Callable[[int], Submit], str, str | None]] = [
            ("miss", lambda i: _fresh(rig, fleet, tmp, "small"), "compiled", "scssq.compile"),
            (
                "hit_new_commit",
                lambda i: _new(rig, fleet, mapped_src, tmp),
                "cached",
                "scssq.record",
            ),
            ("hit", lambda i: rig.submit(fleet, mapped_src, mapped, tmp / "out"), "cached", None),
        ]
        if bootstrap:
            kinds.append(
                (
                    "miss_bootstrap",
                    lambda i: _fresh(rig, fleet, tmp, "bootstrap"),
                    "compiled",
                    "scssq.compile",
                )
            )
        for _ in range(reps):
            for kind, make, expect, task in kinds:
                n = bootstrap if kind == "miss_bootstrap" else count
                sample = _batch(rig, fleet, [make(i) for i in range(n)], expect, task)
                out.setdefault(kind, []).append(sample)
                print(f"account {name} {kind}: {sample['commands']} commands", flush=True)
    return out


def _fresh(rig: Rig, fleet: BenchFleet, tmp: Path, sheet: str) -> Submit:
    variant = rig.next_variant(1)
    src = SHEETS[sheet](tmp / f"{sheet}-{variant}", variant)
    return rig.submit(fleet, src, bundles.commit(), tmp / "out")


def _new(rig: Rig, fleet: BenchFleet, src: Path, tmp: Path) -> Submit:
    return rig.submit(fleet, src, bundles.commit(), tmp / "out")


def _lock_taken(rig: Rig, fleet: BenchFleet, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list(rig.redis.scan_iter(match=f"{fleet.prefix}:lock:*")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no lock taken:\n{fleet.logs()}")
        time.sleep(0.002)


def _subscribed(rig: Rig, fleet: BenchFleet) -> int:
    channels = rig.redis.pubsub_channels(f"{fleet.prefix}:done:*")
    return sum(int(n) for _, n in rig.redis.pubsub_numsub(*channels)) if channels else 0


def waiters(rig: Rig, count: int, settle: float) -> dict[str, Any]:
    """``count`` ``scssq submit`` processes wait for one compile whose worker is frozen
    (SIGSTOP) with the lock held; memory and connections per waiter, then the wake-up."""
    fleet = rig.fleets["one"]
    tmp = rig.tmp / "waiters"
    src = bundles.loop(tmp / "src", bundles.calibrate_loop(1.0, tmp), salt="waiters")
    commit = bundles.commit()
    with rig.running(fleet):
        argv = rig.submit(fleet, src, commit, tmp / "out-first").argv()
        first = subprocess.Popen(argv, env=fleet.env, stdout=subprocess.DEVNULL)
        _lock_taken(rig, fleet)
        fleet.pause()
        try:
            time.sleep(settle)  # idle query and reply buffers are trimmed after 2 s
            before = snapshot(rig.redis)
            procs = [_spawn(rig.submit(fleet, src, commit, tmp / f"out-{i}")) for i in range(count)]
            deadline = time.monotonic() + 60 + 3 * count
            while _subscribed(rig, fleet) < count + 1:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{_subscribed(rig, fleet)} of {count + 1} subscribed")
                time.sleep(0.2)
            time.sleep(settle)
            waiting = snapshot(rig.redis)
        finally:
            fleet.resume()
        outcomes = [p.communicate(timeout=300)[0].split(maxsplit=1)[0] for p in procs]
        first.wait(timeout=300)
        woke = diff(waiting, snapshot(rig.redis))
    codes = [first.returncode, *(p.returncode for p in procs)]
    if any(codes) or set(outcomes) != {"shared"}:
        raise RuntimeError(f"waiters: {outcomes}")
    return {
        "waiters": count,
        "memory_per_waiter": (waiting.memory - before.memory) / count,
        "clients_memory_per_waiter": (waiting.clients_memory - before.clients_memory) / count,
        "connections_per_waiter": (waiting.clients - before.clients) / count,
        "wake_redis_cpu_us": woke.cpu / count * 1e6,
        "wake_commands": woke.total / count,
    }


def _spawn(sub: Submit) -> subprocess.Popen[str]:
    return subprocess.Popen(
        sub.argv(),
        env=sub.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
