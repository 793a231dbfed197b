"""Benchmark 1, the herd: N concurrent submits of one key against a fleet of 2 workers.

``python -m bench.herd [--quick] [--sizes 10,100,500] [--waits 1,5] [--reps 3]``

Each round starts N waiters at the same wall-clock instant, spread over 4 submitter
processes as threads (:mod:`bench.herd_runner`), against 2 ``celery worker`` processes
(``--concurrency=1`` each) on a private redis-server. Four variants, same arrangement:

* **scssq**: ``cli.client.submit()`` of one bundle whose compile takes about W seconds
  (a CPU-bound ``@for`` loop with a tiny output; a fresh key per round);
* **poll 2 s / poll 100 ms**: the seed service's shape: the compile is enqueued once and
  every waiter ``GET``\\ s the result key every 2 s (100 ms) from a random phase, then
  reads the artifact;
* **raw floor**: plain redis-py pub/sub: N subscribers, one ``PUBLISH`` after W s; each
  then reads the CSS from the store like the other variants, so the post-wake load on
  the two cores (which delays the waiters still waking) is the same.

Measured: compiles (the engine processes' own trace), time until the last submitter
has the CSS, wake-up after completion (the waiter's ``time.time()`` when its wait
returned minus the server's ``MONITOR`` timestamp of the completing ``PUBLISH``), and
Redis commands per waiter, counted with ``MONITOR`` on the waiters' own connections
(named with ``CLIENT SETNAME``). ``MONITOR`` runs during every variant alike. Wake-ups
count only waiters already waiting at the completion: a submitter that the herd's own
CPU load delayed until after it finds the message buffered on its subscription (a
"late" arrival, counted apart; no wake-up is lost either way).

The fleet runs with ``SCSSQ_LOCK_TTL=10``: waits (1 s, 5 s) stay below the TTL that caps
a wait, and the duplicate compile tasks' deferred re-checks (after the lock's TTL) finish
before the next round, which waits until the fleet is idle.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench import bundles
from bench.common import Report, ms
from bench.fleet import BenchFleet, redis_server
from bench.herd_runner import serve
from bench.herd_stats import VARIANTS, goals, round_measures, rows, tables
from bench.monitor import Recorder, publish_time, script_publish
from compiler_tasks.bundle.collect import collect
from compiler_tasks.keys import RedisKeys, compile_key
from compiler_tasks.store import open_store

PROCESSES = 4
LOCK_TTL = 10
INTERVALS = {"poll-2s": 2.0, "poll-100ms": 0.1}
#: Seconds between sending a round and its start: every thread is up and connected by then.
LEAD = 1.5


class Runners:
    """The submitter processes; :meth:`round` splits N waiters among them."""

    def __init__(self, count: int, cpus: set[int] | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        self.woken = ctx.Value("i", 0)
        self.all_woken = ctx.Event()
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=serve, args=(child, self.woken, self.all_woken, cpus), daemon=True
            )
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a herd runner did not start")

    def round(self, job: dict[str, Any], n: int, tag: str) -> list[dict[str, Any]]:
        names = [f"{tag}-{i}" for i in range(n)]
        with self.woken.get_lock():
            self.woken.value = 0
        self.all_woken.clear()
        for k, pipe in enumerate(self.pipes):
            share = list(range(k, n, len(self.pipes)))
            pipe.send({**job, "names": [names[i] for i in share], "indexes": share, "parties": n})
        records: list[dict[str, Any]] = []
        for pipe in self.pipes:
            records.extend(pipe.recv())
        return records

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(10)


def _round(
    fleet: BenchFleet,
    runners: Runners,
    variant: str,
    n: int,
    iterations: int,
    wait: float,
    tmp: Path,
) -> dict[str, Any]:
    """One round of one variant; returns its measurements."""
    tag = f"h{secrets.token_hex(3)}"
    src = bundles.loop(tmp / tag / "src", iterations, salt=tag)
    out = tmp / tag / "out"
    keys = RedisKeys(fleet.prefix)
    settings = fleet.settings()
    start_at = time.time() + LEAD
    job: dict[str, Any] = {"start_at": start_at, "timeout": 120.0, "out": str(out)}
    runs_before = fleet.engine_runs()
    recorder = Recorder(settings.redis_url).start()
    driver = fleet.client()
    try:
        if variant == "scssq":
            job.update(variant="scssq", src=str(src), commit=bundles.commit())
            records = runners.round(job, n, tag)
        elif variant.startswith("poll"):
            bundle = collect(src, exclude=[out], max_bytes=1 << 24, max_files=100)
            config = bundles.config(src, tmp / tag / "driver")
            key = compile_key(bundle.digest, config.options, driver.engine_version("libsass"))
            job.update(variant="poll", interval=INTERVALS[variant], result_key=keys.result(key))
            # The seed service's shape: one request enqueues, everyone polls the result.
            records = _with_trigger(
                runners, job, n, tag, start_at, lambda: _enqueue(driver, config, tag)
            )
            channel = keys.done(key)
        else:
            channel = f"bench:raw:{tag}"
            job.update(variant="raw", channel=channel)
            admin = redis.Redis.from_url(settings.redis_url)
            css = f"bench/{tag}/main.css"
            open_store(settings.store_url).put(css, b".herd { value: 1; }\n")
            records = _with_trigger(
                runners,
                job,
                n,
                tag,
                start_at,
                lambda: _publish_raw(admin, channel, n, start_at + wait, css),
            )
            admin.close()
    finally:
        commands = recorder.stop()
        driver.close()
    if variant == "scssq":
        key = _key_of(fleet, src)
        channel = keys.done(key)
    completed = (
        publish_time(commands, channel) if variant == "raw" else script_publish(commands, channel)
    )
    measured = round_measures(records, commands, completed, start_at, tag)
    fleet.wait_idle(timeout=LOCK_TTL * 4 + 60)
    shutil.rmtree(tmp / tag, ignore_errors=True)
    return {
        "variant": variant,
        "n": n,
        "target_wait_s": wait,
        "compiles": fleet.engine_runs() - runs_before,
        **measured,
    }


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children found through ``/proc/*/stat``)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(stat[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parents.items() if p in frontier]
        found += kids
        frontier = kids
    return found


def _key_of(fleet: BenchFleet, src: Path) -> str:
    bundle = collect(src, exclude=[], max_bytes=1 << 24, max_files=100)
    config = bundles.config(src, src.parent / "out")
    client = fleet.client()
    try:
        version = client.engine_version("libsass")
    finally:
        client.close()
    return compile_key(bundle.digest, config.options, version)


def _enqueue(driver: Any, config: Any, tag: str) -> None:
    from cli.client import submit

    submit(driver, config, bundles.commit(), timeout=120, wait=False)


def _publish_raw(admin: redis.Redis, channel: str, n: int, at: float, css: str) -> None:
    deadline = time.monotonic() + 60
    while sum(int(count) for _, count in admin.pubsub_numsub(channel)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only some of {n} raw subscribers arrived")
        time.sleep(0.01)
    while (left := at - time.time()) > 0:
        time.sleep(min(left, 0.05))
    # about the size of a done message (the manifest of one entry)
    admin.publish(channel, json.dumps({"css": css, "pad": "x" * 600}))


def _with_trigger(
    runners: Runners, job: dict[str, Any], n: int, tag: str, start_at: float, trigger: Any
) -> list[dict[str, Any]]:
    """Run a round while ``trigger`` (enqueue or publish) runs in this process at ``start_at``."""
    import threading

    failure: list[BaseException] = []

    def fire() -> None:
        while (left := start_at - time.time()) > 0:
            time.sleep(min(left, 0.05))
        try:
            trigger()
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    records = runners.round(job, n, tag)
    thread.join(120)
    if failure:
        raise failure[0]
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=10,50, one rep: a smoke run")
    parser.add_argument("--sizes", default=None, help="comma-separated N (default 10,100,500)")
    parser.add_argument("--waits", default="1,5", help="compile durations, s (default 1,5)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="diagnostic: fleet, Redis and this process on CPU 0, the waiters on CPU 1",
    )
    parser.add_argument("--name", default="herd", help="results name (default herd)")
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions (default 15 for N<=10, else 3)"
    )
    args = parser.parse_args()
    sizes = [int(x) for x in (args.sizes or ("10,50" if args.quick else "10,100,500")).split(",")]
    waits = [float(x) for x in args.waits.split(",")]

    def reps_for(n: int) -> int:
        """More repetitions for small N, so that its p99 rests on enough wake-ups: the p99
        of 50 is between the two slowest, of 150 between the second and third."""
        return args.reps or (1 if args.quick else (15 if n <= 10 else 3))

    report = Report(
        args.name,
        args.quick,
        params={
            "sizes": sizes,
            "waits_s": waits,
            "reps": {n: reps_for(n) for n in sizes},
            "processes": PROCESSES,
            "workers": "2 celery workers x --concurrency=1",
            "lock_ttl_s": LOCK_TTL,
            "pinned": "fleet, Redis, MONITOR on CPU 0; waiters on CPU 1" if args.pin else "no",
            "submitters": f"threads of {PROCESSES} processes (client API), one Client each",
        },
    )
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scssq-bench-herd-") as tmp_dir, redis_server() as rs:
        tmp = Path(tmp_dir)
        iterations = {w: bundles.calibrate_loop(w, tmp) for w in waits}
        report.params["loop_iterations"] = iterations
        fleet = BenchFleet(tmp / "fleet", redis=rs, workers=2, concurrency=1, lock_ttl=LOCK_TTL)
        fleet.start()
        fleet.export()
        if args.pin:  # the fleet, Redis and this process on CPU 0, the waiters on CPU 1
            for pid in [rs.proc.pid, os.getpid(), *fleet.worker_pids()]:
                for each in [pid, *_descendants(pid)]:
                    os.sched_setaffinity(each, {0})
        runners = Runners(PROCESSES, {1} if args.pin else None)
        try:
            # warm-up: engine processes started, Celery connections open
            _round(fleet, runners, "scssq", 4, 2000, 0.1, tmp)
            runs = [(n, w, r) for n in sizes for w in waits for r in range(reps_for(n))]
            for n, wait, rep in runs:
                order = VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]
                for variant in order:
                    r = _round(fleet, runners, variant, n, iterations[wait], wait, tmp)
                    rounds.append(r)
                    print(
                        f"N={n} wait={wait:g}s rep={rep} {variant}: compiles={r['compiles']} "
                        f"wake p99={ms(r['wake_s']['p99'])} cmds p50={r['commands']['p50']:.0f} "
                        f"last={r['last_css_s'] or 0:.2f}s errors={r['error_count']}",
                        flush=True,
                    )
        finally:
            runners.close()
            fleet.stop()
    pooled = rows(rounds)
    report.data = {"rounds": rounds, "rows": pooled}
    label = "herd (pinned)" if args.pin else "herd"
    goals(report, pooled, sizes, label)
    title = (
        "### Herd, pinned (diagnostic): fleet, Redis and MONITOR on CPU 0, waiters on CPU 1"
        if args.pin
        else "### Herd"
    )
    report.write(f"{title}\n\n" + tables(pooled))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
