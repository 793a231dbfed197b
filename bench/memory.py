"""Benchmark 5, memory: worker and engine-process RSS before and after 500 compiles.

``python -m bench.memory [--quick] [--compiles 500]``

One ``celery worker --concurrency=1`` (so its pool process and its one engine process
see every compile) compiles small distinct sheets (a mixin, a loop, colour functions)
submitted with the client API. ``SCSSQ_ENGINE_MAX_COMPILES`` is raised above the count
so the engine process is not replaced midway (the default, 500, would hide its growth).
RSS (``VmRSS`` of ``/proc/PID/status``) of the worker's main process, its pool process
and the engine process is read after a warm-up of 20 compiles ("before"), every 50
compiles, and at the end ("after").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import bundles
from bench.common import Report, table
from bench.fleet import BenchFleet, redis_server
from cli.client import submit

WARMUP = 20
EVERY = 50


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


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def processes(worker_pid: int) -> dict[str, int]:
    """``{"worker": pid, "pool": pid, "engine": pid}`` of one worker (concurrency 1)."""
    found = {"worker": worker_pid}
    for pool in _children(worker_pid):
        if "compiler_tasks.engine_child" in _cmdline(pool):
            continue
        found["pool"] = pool
        for child in _children(pool):
            if "compiler_tasks.engine_child" in _cmdline(child):
                found["engine"] = child
    return found


def sample(worker_pid: int) -> dict[str, dict[str, int]]:
    return {
        role: {"pid": pid, "rss_kib": _rss_kib(pid)} for role, pid in processes(worker_pid).items()
    }


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
            "worker": "1 celery worker --concurrency=1, SCSSQ_ENGINE_MAX_COMPILES=100000",
            "bundles": "small distinct sheets (bench.bundles.small)",
        },
    )
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scssq-bench-mem-") as tmp_dir, redis_server() as rs:
        tmp = Path(tmp_dir)
        fleet = BenchFleet(
            tmp / "fleet", redis=rs, workers=1, concurrency=1, engine_max_compiles=100000
        )
        with fleet:
            fleet.export()
            client = fleet.client()
            worker = fleet.worker_pids()[0]
            done = 0
            started = time.monotonic()
            for i in range(WARMUP + count):
                src = bundles.small(tmp / "src" / str(i), i)
                res = submit(
                    client, bundles.config(src, tmp / "out" / str(i)), bundles.commit(), timeout=120
                )
                if res.outcome != "compiled":
                    raise RuntimeError(f"expected a compile, got {res.outcome}")
                done = i + 1 - WARMUP
                if done >= 0 and done % EVERY == 0:
                    fleet.wait_idle()
                    samples.append({"compiles": done, **sample(worker)})
                    print(f"{done} compiles: {samples[-1]}", flush=True)
            client.close()
            seconds = time.monotonic() - started
            runs = fleet.engine_runs()
    before, after = samples[0], samples[-1]
    rows = []
    for role in ("worker", "pool", "engine"):
        b, a = before[role], after[role]
        same = b["pid"] == a["pid"]
        growth = a["rss_kib"] / b["rss_kib"] - 1
        rows.append(
            {
                "process": role,
                "before_kib": b["rss_kib"],
                "after_kib": a["rss_kib"],
                "growth": growth,
                "same_pid": same,
            }
        )
        report.goal(
            f"memory: {role} process RSS growth over {count} compiles, %",
            growth * 100,
            10.0,
            note=f"{b['rss_kib'] / 1024:.1f} → {a['rss_kib'] / 1024:.1f} MiB"
            + ("" if same else " (process was replaced!)"),
        )
    report.data = {"samples": samples, "rows": rows, "engine_runs": runs, "seconds": seconds}
    labels = {
        "worker": "worker main process",
        "pool": "pool process (runs the task)",
        "engine": "engine process (libsass)",
    }
    text = "### Memory\n\n" + table(
        ["process", f"RSS after {WARMUP} warm-up compiles", f"after {count} more", "growth"],
        [
            (
                labels[r["process"]],
                f"{r['before_kib'] / 1024:.1f} MiB",
                f"{r['after_kib'] / 1024:.1f} MiB",
                f"{r['growth'] * 100:+.1f} %",
            )
            for r in rows
        ],
    )
    report.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
