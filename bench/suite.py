"""The whole benchmark suite, one command: ``python -m bench.suite`` (``make bench``).

Fetches the corpus (``bench/corpus.py``), runs every benchmark in its own process (each
starts its own redis-server, workers and, for hits, an S3 server on loopback), then
draws the figures (:mod:`bench.figures`) and writes ``bench/results/summary.md``
(:mod:`bench.report`). Benchmarks are not tests: they measure, print tables and write
JSON under ``bench/results/`` (ignored by git); a missed goal does not fail the suite,
a benchmark that crashes does.

Options: ``--quick`` (small N, for building and debugging), ``--only herd,hit``,
``--max-load L`` (wait up to ``--max-wait`` seconds for the 1-minute load average to
drop to L before starting; the numbers are ratios measured side by side, but a busy
machine still widens them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.common import ROOT, wait_for_quiet

BENCHMARKS = ("herd", "herd-pinned", "throughput", "miss", "hit", "memory", "dart-heap", "engines")


def _command(name: str, quick: bool) -> list[str]:
    if name == "engines":  # another engineer's script, run as it is documented
        return [
            sys.executable,
            str(ROOT / "bench" / "engines.py"),
            "--runs",
            "10" if quick else "15",
        ]
    if name == "herd-pinned":  # diagnostic: the herd with the fleet and the waiters apart
        sizes = "10,50" if quick else "10,100"
        extra = ["--quick"] if quick else []  # the herd's repetitions
        return [
            sys.executable,
            "-m",
            "bench.herd",
            "--pin",
            "--name",
            name,
            "--sizes",
            sizes,
            *extra,
        ]
    module = name.replace("-", "_")  # dart-heap: bench/dart_heap.py
    return [sys.executable, "-m", f"bench.{module}", *(["--quick"] if quick else [])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {BENCHMARKS}")
    parser.add_argument("--max-load", type=float, default=None, help="wait for this load first")
    parser.add_argument("--max-wait", type=float, default=2400, help="seconds to wait for it")
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or b in args.only.split(",")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, str(ROOT / "bench" / "corpus.py")], check=True, env=env)
    if args.max_load is not None:
        load = wait_for_quiet(args.max_load, args.max_wait)
        print(f"load average {load:.2f} (asked for <= {args.max_load})", flush=True)
    failed = []
    for name in chosen:
        print(f"\n=== {name} (load average {os.getloadavg()[0]:.2f}) ===", flush=True)
        started = time.monotonic()
        code = subprocess.run(_command(name, args.quick), cwd=ROOT, env=env).returncode
        print(f"=== {name}: exit {code} in {time.monotonic() - started:.0f} s ===", flush=True)
        if code != 0:
            failed.append(name)
    subprocess.run([sys.executable, "-m", "bench.figures"], cwd=ROOT, env=env, check=False)
    subprocess.run([sys.executable, "-m", "bench.report"], cwd=ROOT, env=env, check=False)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
