"""Cold start of a pool scaled to zero: one ``scssq submit`` (a miss) when no worker
runs and the queue must first wake one, against the same submit with a warm worker.

``python -m bench.cold_start [--runs 8] [--poll 0.1]``

What KEDA does is done by :class:`tests.support.scaler.QueueScaler`: it polls the
queue's ``LLEN`` every ``--poll`` seconds and starts one real ``celery worker`` (the
production command of :mod:`tests.support.fleet`) when a task waits and no worker
runs. A worker ran once before the first run, so the engine versions are known (as
on any Redis a worker has served). Each run submits a fresh bundle (a miss) twice,
alternating:

* **cold**: no worker alive; the submit enqueues, the scaler starts a worker, which
  boots (Celery, the engines' versions, its heartbeat), takes the task and compiles;
* **warm**: the worker the cold submit woke is still up.

Then the worker is stopped (warm shutdown), and the next run starts cold again. The
times are the whole ``scssq submit`` process, interpreter start included. Not
measured here, and added by a real cluster to the cold time: KEDA's own polling
(up to ``pollingInterval``, 10 s in deploy/k8s/keda.yaml, instead of ``--poll``),
the pod's scheduling (a node with room, or the cluster autoscaler adding one), the
image pull on a node without it, and the container start.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import ms, ratio, table
from bench.fleet import redis_server
from tests.support.fleet import Fleet
from tests.support.scaler import QueueScaler

RUNS = 8
SCSS = "$w: {n}px;\n.cold-{n} {{ border: $w solid; .inner {{ margin: $w * 2; }} }}\n"


def _submit(fleet: Fleet, tmp: Path, n: int) -> float:
    """Wall seconds of one ``scssq submit`` of a bundle no one compiled yet."""
    src = tmp / f"src{n}"
    src.mkdir()
    (src / "main.scss").write_text(SCSS.format(n=n))
    args = ["--src", str(src), "--entry", "main.scss", "--out", str(tmp / f"out{n}")]
    started = time.perf_counter()
    proc = fleet.scssq("submit", f"{n:040x}", *args, "--project", "bench", "--timeout", "120",
                       cwd=tmp, timeout=180)  # fmt: skip
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"submit {n} exited {proc.returncode}: {proc.stderr}\n{fleet.logs()}")
    return seconds


def measure(runs: int, poll: float) -> dict[str, list[float]]:
    """``runs`` pairs of (cold, warm) submit times, in seconds."""
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    with redis_server() as server, tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        fleet = Fleet(server.url, tmp)
        try:
            fleet.start_worker(concurrency=1)  # runs once: the engine versions are known
            fleet.stop_workers()
            with QueueScaler(fleet, concurrency=1, interval=poll) as scaler:
                for run in range(runs):
                    times["cold"].append(_submit(fleet, tmp, 2 * run + 1))
                    times["warm"].append(_submit(fleet, tmp, 2 * run + 2))
                    fleet.stop_workers()  # scaled back to zero
            if scaler.woken != runs:
                raise RuntimeError(f"the scaler woke {scaler.woken} workers for {runs} runs")
        finally:
            fleet.stop()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="cold/warm pairs")
    parser.add_argument("--poll", type=float, default=0.1, help="scaler's LLEN poll, seconds")
    parser.add_argument("--json", action="store_true", help="print the times as JSON")
    args = parser.parse_args(argv)
    times = measure(args.runs, args.poll)
    cold, warm = statistics.median(times["cold"]), statistics.median(times["warm"])
    if args.json:
        print(json.dumps({**times, "cold_p50": cold, "warm_p50": warm, "ratio": cold / warm}))
        return 0
    rows = [
        ("cold (scaler starts a worker)", ms(cold), ms(min(times["cold"])), ms(max(times["cold"]))),
        ("warm (worker already up)", ms(warm), ms(min(times["warm"])), ms(max(times["warm"]))),
    ]
    print(table(("submit, a miss", "p50", "min", "max"), rows))
    print(f"\n{args.runs} runs each, alternating; scaler poll {args.poll:g} s; "
          f"cold/warm {ratio(cold / warm)}, cold start +{ms(cold - warm)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
