"""Where a warm client API hit's time goes: each step of a Bootstrap 5 hit, timed.

``python -m bench.hit_steps [--hits 64]`` (not part of the suite: a diagnostic for
:mod:`bench.hit`'s API cell)

One worker, the local store. A warm ``Client`` submits a cached Bootstrap 5.3.3 bundle
back to back; the functions of each step are wrapped with ``perf_counter`` timers
(about 1 µs each) and the medians printed as a Markdown table, the rest being the
submit's median minus the steps'.
"""

from __future__ import annotations

import argparse
import collections
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import bundles
from bench.fleet import BenchFleet, redis_server
from cli import client as client_api
from cli import outputs, transport

STEPS = (
    (client_api, "collect_bundle", "reading the sources"),
    (transport.Link, "call", "a round trip to Redis (two per hit, plus the count)"),
    (outputs, "get_verified", "reading and checking the artifact"),
    (outputs, "write_output", "comparing it with the file under `--out`, touching it"),
)


def _timed(owner: Any, name: str, into: list[float]) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)

    setattr(owner, name, timed)


def _median_us(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, default=64, help="timed hits (default 64)")
    args = parser.parse_args()
    times: dict[str, list[float]] = collections.defaultdict(list)
    for owner, name, label in STEPS:
        _timed(owner, name, times[label])
    with tempfile.TemporaryDirectory(prefix="scssq-bench-steps-") as tmp_dir, redis_server() as rs:
        tmp = Path(tmp_dir)
        fleet = BenchFleet(tmp / "fleet", redis=rs, workers=1, store="file").start()
        try:
            fleet.export()
            src = bundles.bootstrap(tmp / "bootstrap", 7, "bootstrap")
            commit = bundles.commit()
            client = fleet.client()
            config = bundles.config(src, tmp / "out")
            client_api.submit(client, config, commit, timeout=120)
            fleet.wait_idle()
            for _ in range(10):
                client_api.submit(client, config, commit, timeout=60)
            for values in times.values():
                values.clear()
            total: list[float] = []
            for _ in range(args.hits):
                started = time.perf_counter()
                res = client_api.submit(client, config, commit, timeout=60)
                total.append(time.perf_counter() - started)
                assert res.outcome == "cached", res.outcome
            client.close()
        finally:
            fleet.stop()
    steps = sum(_median_us(values) for values in times.values())
    print("| step | time |\n|---|---:|")
    for label, values in times.items():
        print(f"| {label} | {_median_us(values):.0f} µs |")
    rest = _median_us(total) - steps
    print(f"| the rest (replies parsed, key, bookkeeping) | about {rest:.0f} µs |")
    print(f"| total (median of {len(total)}) | {_median_us(total):.0f} µs |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
