"""Benchmark 2, throughput: distinct Bootstrap bundles through the fleet vs the raw engine.

``python -m bench.throughput [--quick] [--bundles 200] [--rounds 4]``

Bundles are Bootstrap 5.3.3 with a distinct ``$primary`` each (so every key differs).
The same files go through

* **the fleet**: 2 ``celery worker`` processes (``--concurrency=1`` each) on a private
  Redis and a local store. Per round, the workers are paused (SIGSTOP), the round's
  bundles are submitted with the client API (``submit(..., wait=False)``), and the clock
  starts when the workers resume (SIGCONT) and stops at the last ``done`` message (a
  ``PSUBSCRIBE`` on the done channels). Client-side bundling is not timed: on a real
  fleet it runs on the CI machines, not on the workers' cores.
* **the raw engine**: libsass, ``sass.compile(filename=..., output_style="expanded")``
  writing the CSS to a file, in a pool of 2 warm processes fed one bundle at a time.

Rounds alternate (raw, fleet, fleet, raw, ...), each on fresh bundles for the fleet and
the same bundles for the raw engine; throughput is bundles per second over all rounds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench import bundles
from bench.common import Report, percentile, table
from bench.fleet import BenchFleet, redis_server
from cli.client import submit


def _raw_one(src: str) -> float:
    """Compile one bundle in a pool process; returns when it finished (``time.time()``)."""
    bundles.raw_compile(Path(src), Path(src) / "raw-out" / "main.css")
    return time.time()


def _pool_warm(_: int) -> int:
    import sass  # noqa: F401

    return 0


def raw_round(pool: Any, sources: list[Path]) -> tuple[float, list[float]]:
    """Seconds for the pool to compile ``sources``, and each completion's offset."""
    started = time.time()
    finished = list(pool.imap_unordered(_raw_one, [str(s) for s in sources], chunksize=1))
    ended = time.time()
    return ended - started, sorted(f - started for f in finished)


def fleet_round(fleet: BenchFleet, sources: list[Path], tmp: Path) -> tuple[float, list[float]]:
    """Seconds for the fleet to compile ``sources`` (queued while paused), and each
    completion's offset."""
    client = fleet.client()
    settings = fleet.settings()
    listener = redis.Redis.from_url(settings.redis_url)
    pubsub = listener.pubsub()
    pubsub.psubscribe(f"{settings.prefix}:done:*")
    fleet.pause()
    try:
        for src in sources:
            config = bundles.config(src, tmp / "fleet-out" / src.name)
            res = submit(client, config, bundles.commit(), timeout=900, wait=False)
            if res.outcome != "queued":
                raise RuntimeError(f"{src.name}: expected a miss, got {res.outcome}")
    finally:
        started = time.time()
        fleet.resume()
    finished: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + 60 + 10 * len(sources)
    while len(finished) < len(sources):
        if time.monotonic() > deadline:
            raise TimeoutError(f"fleet finished {len(finished)}/{len(sources)}:\n{fleet.logs()}")
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        if msg is None or msg["type"] != "pmessage":
            continue
        data = json.loads(msg["data"])
        if data.get("type") != "done":
            continue
        finished.append(time.time() - started)
        if data["result"].get("status") != "ok":
            failures.append(str(data["result"].get("message")))
    pubsub.close()
    listener.close()
    client.close()
    if failures:
        raise RuntimeError(f"{len(failures)} compiles failed: {failures[:3]}")
    fleet.wait_idle()
    return finished[-1], sorted(finished)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 bundles in 2 rounds")
    parser.add_argument("--bundles", type=int, default=None, help="bundles (default 200)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per side (default 4)")
    args = parser.parse_args()
    count = args.bundles or (20 if args.quick else 200)
    rounds = args.rounds or (2 if args.quick else 4)
    per_round = max(2, count // rounds)
    report = Report(
        "throughput",
        args.quick,
        params={
            "bundles": per_round * rounds,
            "rounds": rounds,
            "bundle": bundles.label() + " with a distinct $primary",
            "fleet": "2 celery workers x --concurrency=1, local store",
            "raw": "libsass sass.compile(filename=...) in 2 warm processes",
        },
    )
    raw_times: list[float] = []
    fleet_times: list[float] = []
    curves: dict[str, list[list[float]]] = {"raw": [], "fleet": []}
    with tempfile.TemporaryDirectory(prefix="scssq-bench-tp-") as tmp_dir, redis_server() as rs:
        tmp = Path(tmp_dir)
        sources = [bundles.bootstrap(tmp / f"b{i:04d}", i) for i in range(per_round * rounds + 4)]
        warm, sources = sources[:4], sources[4:]
        fleet = BenchFleet(tmp / "fleet", redis=rs, workers=2, concurrency=1)
        ctx = multiprocessing.get_context("spawn")
        with fleet, ctx.Pool(2) as pool:
            fleet.export()
            pool.map(_pool_warm, range(2))
            raw_round(pool, warm[:2])
            fleet_round(fleet, warm, tmp)  # engine processes started in both workers
            for r in range(rounds):
                chunk = sources[r * per_round : (r + 1) * per_round]
                sides = ("raw", "fleet") if r % 2 == 0 else ("fleet", "raw")
                for side in sides:
                    if side == "raw":
                        took, curve = raw_round(pool, chunk)
                        raw_times.append(took)
                    else:
                        took, curve = fleet_round(fleet, chunk, tmp)
                        fleet_times.append(took)
                    curves[side].append(curve)
                    print(
                        f"round {r} {side}: {len(chunk)} bundles in {took:.2f} s "
                        f"({len(chunk) / took:.2f}/s)",
                        flush=True,
                    )
            compiles = fleet.engine_runs()
    n = per_round * rounds
    raw_rate = n / sum(raw_times)
    fleet_rate = n / sum(fleet_times)
    per_round_ratio = [r / f for r, f in zip(raw_times, fleet_times, strict=True)]
    report.data = {
        "raw_seconds": raw_times,
        "fleet_seconds": fleet_times,
        "raw_per_s": raw_rate,
        "fleet_per_s": fleet_rate,
        "ratio": fleet_rate / raw_rate,
        "per_round_ratio": per_round_ratio,
        "fleet_engine_runs": compiles,
        "curves": curves,
    }
    report.goal(
        "throughput: fleet ÷ raw engine (bundles/s)",
        fleet_rate / raw_rate,
        0.90,
        at_most=False,
        note=f"{n} bundles; per-round median {percentile(per_round_ratio, 50):.2f}",
    )
    text = "### Throughput\n\n" + table(
        ["", "bundles", "seconds", "bundles/s", "per bundle (2 slots)"],
        [
            (
                "raw libsass, 2 processes",
                n,
                f"{sum(raw_times):.1f}",
                f"{raw_rate:.2f}",
                f"{2 / raw_rate * 1000:.0f} ms",
            ),
            (
                "scssq fleet, 2 workers",
                n,
                f"{sum(fleet_times):.1f}",
                f"{fleet_rate:.2f}",
                f"{2 / fleet_rate * 1000:.0f} ms",
            ),
        ],
    )
    report.write(text + f"\n\nfleet ÷ raw: **{fleet_rate / raw_rate:.2f}**")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
