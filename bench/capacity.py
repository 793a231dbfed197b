"""Capacity: what one Redis, the store and the workers take per submit, measured here.

``python -m bench.capacity [--quick] [--seconds 15] [--loops 4,8,16] [--reps 3]``

One run, on one private ``redis-server`` shared by three fleets (each with its own key
prefix and queue, as projects share a production Redis): ``one`` (1 worker) and ``two``
(2 workers) on a local file store, and ``s3`` (1 worker) on moto's S3 server on loopback,
whose request log counts S3 requests. Every worker is a real ``celery worker``
(``--concurrency=1``); every submit below is a real ``scssq submit`` process unless said,
of the client installed as a runner installs it: the wheel in a venv of its own, with
``requirements/client.lock`` and bytecode compiled by pip
(:func:`tests.support.client_install.client_venv`), not this checkout's editable install.
Fleets not in a measurement are paused (SIGSTOP), so Redis counts only what is measured.

1. **hits**: ``--loops`` concurrent loops of ``scssq submit`` on one mapped commit (a
   warm hit on the file store; Bootstrap 5.3.3, or a small sheet with ``--quick``) for
   ``--seconds`` each, the levels rotating over ``--reps`` repetitions: hits per second,
   and Redis's commands, bytes and CPU per hit (``INFO`` deltas, all workers paused);
2. **misses**: distinct bundles queued while the workers are paused, timed from resume
   to the last ``done`` (:func:`bench.throughput.fleet_round`, the client API), 1 worker
   against 2 workers alternating: a small sheet and Bootstrap 5.3.3; the workers' CPU
   per miss; Redis ``used_memory`` per result stored;
3. **per submit**, on the file store and on S3: misses, hits of a new commit (the
   ``scssq.record`` task maps it) and hits of a mapped commit, one process after
   another: Redis commands by name and bytes in and out (``INFO commandstats`` and
   ``total_net_input_bytes``/``total_net_output_bytes``, the workers' background rate
   measured just before and taken off), S3 requests by operation, memory;
4. **waiters**: ``scssq submit`` processes waiting on pub/sub for a compile whose worker
   is frozen with the lock held: ``used_memory`` and connections per waiter.

Results: ``bench/results/capacity-<time>.json`` and ``.md``; ``docs/capacity.md`` turns
them into a model for a CI fleet (:mod:`bench.capacity_model`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import capacity_model, capacity_phases
from bench.capacity_probe import S3Log, Submit, key_memory, overhead
from bench.common import RESULTS, Report
from bench.fleet import BenchFleet, redis_server
from tests.support.client_install import client_venv
from tests.support.redis_server import RedisServer
from tests.support.s3 import moto_server

#: Settings of every fleet: a worker frozen with the lock held (the waiters' phase)
#: keeps it, stays listed as alive, and its compile is not timed out meanwhile.
SETTINGS = {
    "lock_ttl": 300,
    "compile_timeout": 600,
    "visibility_timeout": 1800,
    "worker_alive_window": 600,
}


@dataclass
class Plan:
    """How much of each measurement one run makes."""

    loops: list[int]
    seconds: float
    reps: int
    misses: dict[str, int]
    account: int
    account_bootstrap: int
    account_fleets: tuple[str, ...]
    waiters: int
    idle: float
    settle: float
    hit_sheet: str
    gets: int


def plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        loops=[int(x) for x in (args.loops or ("2,4" if quick else "4,8,16")).split(",")],
        seconds=args.seconds or (0.5 if quick else 15.0),
        reps=args.reps or (1 if quick else 3),
        misses={"small": 4} if quick else {"small": 40, "bootstrap": 10},
        account=1 if quick else 10,
        account_bootstrap=0 if quick else 3,
        account_fleets=("s3",) if quick else ("one", "s3"),
        waiters=2 if quick else 40,
        idle=0.3 if quick else 4.0,
        settle=0.3 if quick else 3.0,
        hit_sheet="small" if quick else "bootstrap",
        gets=1000 if quick else 40000,
    )


class Rig:
    """The fleets on one Redis, moto's request log, and which fleets are paused."""

    def __init__(
        self,
        tmp: Path,
        server: RedisServer,
        fleets: dict[str, BenchFleet],
        log: Path,
        client: Path,
    ) -> None:
        self.tmp, self.fleets, self.port, self.url = tmp, fleets, server.port, server.url
        #: The venv the client is installed in, as on a runner (``pip install``).
        self.client = client
        self.redis = server.client()
        self.cost = overhead(self.redis)
        self.s3log = S3Log(log)
        self.idle_seconds = 4.0
        self.paused: set[str] = set()
        self.variant = 1000

    def submit(self, fleet: BenchFleet, src: Path, commit: str, out: Path) -> Submit:
        """A ``scssq submit`` of the installed client to ``fleet``."""
        return Submit(src, commit, out, fleet.env, str(self.client / "bin" / "scssq"))

    def next_variant(self, count: int) -> int:
        """The first of ``count`` variant numbers no bundle of this run has used."""
        self.variant += count
        return self.variant - count

    @contextlib.contextmanager
    def running(self, *fleets: BenchFleet) -> Iterator[None]:
        """Only ``fleets``' workers run inside (the others SIGSTOPped); then as before."""
        before = set(self.paused)
        self._pause({n for n, f in self.fleets.items() if f not in fleets})
        try:
            yield
        finally:
            self._pause(before)

    def _pause(self, names: set[str]) -> None:
        for name, fleet in self.fleets.items():
            if name in names and name not in self.paused:
                fleet.pause()
            elif name not in names and name in self.paused:
                fleet.resume()
        self.paused = set(names)


def start(fleets: dict[str, BenchFleet]) -> None:
    """Start every fleet's workers at once, then wait for all of them."""
    for fleet in fleets.values():
        for _ in range(fleet.workers):
            fleet.fleet.start_worker(fleet.concurrency, wait=False)
    for fleet in fleets.values():
        fleet.fleet.wait_workers(fleet.workers, timeout=180)


def stop_all(fleets: dict[str, BenchFleet]) -> None:
    """SIGTERM (and SIGCONT) every worker at once: they shut down side by side."""
    for fleet in fleets.values():
        for pid in fleet.worker_pids():
            for sig in (signal.SIGTERM, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)


def measure(rig: Rig, p: Plan) -> dict[str, Any]:
    """Every measurement in turn; ``phase_seconds`` says how long each took."""
    data: dict[str, Any] = {"phase_seconds": {}}

    def phase(name: str, fn: Any, *args: Any) -> Any:
        started = time.monotonic()
        result = fn(*args)
        data["phase_seconds"][name] = round(time.monotonic() - started, 1)
        return result

    data["redis_benchmark"] = phase("redis-benchmark", capacity_phases.calibrate, rig, p.gets)
    data["hits"] = phase(
        "hits", capacity_phases.hits, rig, p.hit_sheet, p.loops, p.seconds, p.reps, p.gets // 4
    )
    data["redis_benchmark"] += capacity_phases.calibrate(rig, p.gets)
    data["misses"] = phase("misses", capacity_phases.misses, rig, p.misses, p.reps)
    reps = 1 if p.reps == 1 else 2
    data["account"] = {
        name: phase(
            f"account {name}",
            capacity_phases.account,
            rig,
            name,
            p.account,
            reps,
            p.account_bootstrap,
        )
        for name in p.account_fleets
    }
    data["keys"] = {name: key_memory(rig.redis, rig.fleets[name].prefix) for name in rig.fleets}
    data["waiters"] = phase("waiters", capacity_phases.waiters, rig, p.waiters, p.settle)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--seconds", type=float, default=0, help="per hit level (default 15)")
    parser.add_argument("--loops", default="", help="concurrent hit loops (default 4,8,16)")
    parser.add_argument("--reps", type=int, default=0, help="repetitions (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write")
    args = parser.parse_args(argv)
    p = plan(args)
    report = Report("capacity", args.quick, params=dict(p.__dict__))
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scssq-bench-cap-")))
        client = client_venv(tmp / "client")
        rs = stack.enter_context(redis_server())
        log = tmp / "moto.log"
        endpoint = stack.enter_context(moto_server(log_path=str(log)))
        common: dict[str, Any] = {"redis": rs, "concurrency": 1, **SETTINGS}
        fleets = {
            "one": BenchFleet(tmp / "one", workers=1, **common),
            "two": BenchFleet(tmp / "two", workers=2, **common),
            "s3": BenchFleet(tmp / "s3", workers=1, store="s3", s3_endpoint=endpoint, **common),
        }
        for fleet in fleets.values():
            stack.callback(fleet.stop)
        stack.callback(stop_all, fleets)
        started = time.monotonic()
        start(fleets)
        fleets["one"].export()  # the in-process client API reads the shared Redis
        rig = Rig(tmp, rs, fleets, log, client)
        rig.idle_seconds = p.idle
        report.params["startup_s"] = round(time.monotonic() - started, 1)
        report.data = measure(rig, p)
        rig.redis.close()
    report.data["model"] = capacity_model.model(report.data)
    text = capacity_model.render(report.data)
    path = report.write(text, args.results)
    path.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
