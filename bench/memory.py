"""Benchmark 5, memory: worker and engine-process RSS before and after 500 compiles.

``python -m bench.memory [--quick] [--compiles 500]``

One ``celery worker --concurrency=1`` (so its pool process and its engine processes see
every compile) compiles small distinct sheets (a mixin, a loop, colour functions)
submitted with the client API, in two passes: with libsass, then with Dart Sass (the
same sheets in the module system). ``SCSSQ_ENGINE_MAX_COMPILES`` and
``SCSSQ_DART_MAX_COMPILES`` are raised above the count so that neither engine process is
replaced midway (their defaults, 500 and 1000, would hide their growth). RSS (``VmRSS``
of ``/proc/PID/status``) of the worker's main process, its pool process and the pass's
engine process (the libsass child, or the embedded Dart Sass compiler) is read after a
warm-up of 20 compiles ("before"), every 50 compiles, and at the end ("after"). The
growth after the first 100 compiles is shown as well: the Dart VM's climbed over its
first 50-100 compiles, then stayed flat, until the compiler ran a warm-up sheet of its
own at start (``compiler_tasks/engines/dart/engine.py``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import bundles
from bench.common import Report, table
from bench.fleet import BenchFleet, redis_server
from cli.client import Client, submit

WARMUP = 20
EVERY = 50
#: Compiles after the warm-up from which the "settled" growth is measured as well: the
#: Dart VM's RSS climbed over its first 50-100 compiles before the compiler's own warm-up.
SETTLED = 100
#: engine -> (the sheets it compiles, how its process is told apart among the pool's children)
PASSES: dict[str, tuple[Callable[[Path, int], Path], str]] = {
    "libsass": (bundles.small, "compiler_tasks.engines.libsass.child"),
    "dart-sass": (bundles.small_modules, "--embedded"),
}
LABELS = {
    "worker": "worker main process",
    "pool": "pool process (runs the task)",
    "libsass": "engine process (libsass)",
    "dart-sass": "engine process (the Dart Sass compiler)",
}


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``: the peak), if listed."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS") or 0


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def processes(worker_pid: int) -> dict[str, int]:
    """``{"worker": pid, "pool": pid, "libsass": pid, "dart-sass": pid}`` of one worker
    (concurrency 1); an engine not started yet is left out."""
    found = {"worker": worker_pid}
    for pool in _children(worker_pid):
        if any(mark in _cmdline(pool) for _build, mark in PASSES.values()):
            continue
        found["pool"] = pool
        for child in _children(pool):
            command = _cmdline(child)
            for engine, (_build, mark) in PASSES.items():
                if mark in command:
                    found[engine] = child
    return found


def sample(worker_pid: int) -> dict[str, dict[str, int]]:
    return {
        role: {"pid": pid, "rss_kib": _rss_kib(pid)} for role, pid in processes(worker_pid).items()
    }


def run_pass(
    fleet: BenchFleet, client: Client, engine: str, count: int, tmp: Path
) -> list[dict[str, Any]]:
    """Compile ``WARMUP + count`` distinct sheets with ``engine``; RSS samples every EVERY."""
    build, _mark = PASSES[engine]
    worker = fleet.worker_pids()[0]
    samples: list[dict[str, Any]] = []
    for i in range(WARMUP + count):
        src = build(tmp / engine / "src" / str(i), i)
        config = bundles.config(src, tmp / engine / "out" / str(i), engine=engine)
        res = submit(client, config, bundles.commit(), timeout=120)
        if res.outcome != "compiled":
            raise RuntimeError(f"expected a compile, got {res.outcome}")
        done = i + 1 - WARMUP
        if done >= 0 and done % EVERY == 0:
            fleet.wait_idle()
            samples.append({"compiles": done, **sample(worker)})
            print(f"{engine}, {done} compiles: {samples[-1]}", flush=True)
    return samples


def _rows(engine: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    before, after = samples[0], samples[-1]
    settled = next((s for s in samples if s["compiles"] == SETTLED), None)
    rows = []
    for role in ("worker", "pool", engine):
        b, a = before[role], after[role]
        rows.append(
            {
                "pass": engine,
                "process": role,
                "before_kib": b["rss_kib"],
                "after_kib": a["rss_kib"],
                "growth": a["rss_kib"] / b["rss_kib"] - 1,
                "settled_kib": settled[role]["rss_kib"] if settled else None,
                "growth_after_settled": (
                    a["rss_kib"] / settled[role]["rss_kib"] - 1
                    if settled and after is not settled
                    else None
                ),
                "same_pid": b["pid"] == a["pid"],
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 compiles")
    parser.add_argument("--compiles", type=int, default=None, help="default 500")
    args = parser.parse_args()
    count = args.compiles or (100 if args.quick else 500)
    report = Report(
        "memory",
        args.quick,
        params={
            "compiles": count,
            "warmup": WARMUP,
            "worker": "1 celery worker --concurrency=1, SCSSQ_ENGINE_MAX_COMPILES and "
            "SCSSQ_DART_MAX_COMPILES=100000",
            "bundles": "small distinct sheets (bench.bundles.small, small_modules)",
            "passes": list(PASSES),
        },
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="scssq-bench-mem-") as tmp_dir, redis_server() as rs:
        tmp = Path(tmp_dir)
        fleet = BenchFleet(
            tmp / "fleet",
            redis=rs,
            workers=1,
            concurrency=1,
            engine_max_compiles=100000,
            dart_max_compiles=100000,
        )
        with fleet:
            fleet.export()
            client = fleet.client()
            started = time.monotonic()
            for engine in PASSES:
                samples[engine] = run_pass(fleet, client, engine, count, tmp)
            client.close()
            seconds = time.monotonic() - started
            runs = fleet.engine_runs()
    rows = [row for engine, got in samples.items() for row in _rows(engine, got)]
    for r in rows:
        report.goal(
            f"memory ({r['pass']} pass): {r['process']} process RSS growth over {count} "
            "compiles, %",
            r["growth"] * 100,
            10.0,
            note=f"{r['before_kib'] / 1024:.1f} → {r['after_kib'] / 1024:.1f} MiB"
            + ("" if r["same_pid"] else " (process was replaced!)"),
        )
    report.data = {"samples": samples, "rows": rows, "engine_runs": runs, "seconds": seconds}
    text = "### Memory\n\n" + table(
        [
            "pass",
            "process",
            f"RSS after {WARMUP} warm-up",
            f"after {count} more",
            "growth",
            f"growth after the first {SETTLED}",
        ],
        [
            (
                r["pass"],
                LABELS[r["process"]],
                f"{r['before_kib'] / 1024:.1f} MiB",
                f"{r['after_kib'] / 1024:.1f} MiB",
                f"{r['growth'] * 100:+.1f} %",
                "-"
                if r["growth_after_settled"] is None
                else f"{r['growth_after_settled'] * 100:+.1f} %",
            )
            for r in rows
        ],
        "llrrrr",
    )
    report.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
