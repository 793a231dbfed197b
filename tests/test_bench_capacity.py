"""bench/capacity.py's quick mode on real parts, so that the benchmark cannot rot.

The full benchmark takes minutes (docs/capacity.md); its quick mode runs every
measurement once, small: a private redis-server, real ``celery worker`` processes on a
file store and on moto's S3 server, real ``scssq submit`` processes. What is checked is
that every figure the docs quote comes out (counted, not timed) and the tables are
written; the values themselves belong to the benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_quick_capacity_run_produces_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.capacity", "--quick", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = tmp_path.glob("capacity-*.json")
    data = json.loads(path.read_text())["data"]

    hits = data["hits"]["samples"]
    assert {s["loops"] for s in hits} == {2, 4}
    assert all(s["done"] > 0 and s["commands"] > 0 and s["bytes_out"] > 0 for s in hits)
    assert all(r["hits"] > 0 and r["commands"] > 0 for r in data["hits"]["replays"])
    assert {b["reconnect"] for b in data["redis_benchmark"]} == {False, True}

    misses = data["misses"]["small"]
    assert {s["workers"] for s in misses} == {1, 2}
    assert all(s["per_s"] > 0 and s["keys_per_result"] > 0 for s in misses)

    s3 = data["account"]["s3"]
    assert s3["hit"][0]["s3"].get("GET", 0) >= 1  # the CSS, read from S3
    assert s3["miss"][0]["s3"].get("PUT", 0) >= 2  # the CSS and the manifest
    for kind in ("miss", "hit_new_commit", "hit"):
        assert s3[kind][0]["commands"] > 0 and s3[kind][0]["bytes_in"] > 0, kind
    assert s3["miss"][0]["commands"] > s3["hit"][0]["commands"]
    assert data["keys"]["s3"]["result"]["bytes"] > 0
    assert data["keys"]["s3"]["commit"]["bytes"] > 0
    assert data["waiters"]["waiters"] == 2 and data["waiters"]["connections_per_waiter"] > 0

    fleets = data["model"]["fleets"]
    assert [f["jobs_per_min"] for f in fleets] == [1_000, 10_000, 100_000]
    assert all(f["redis_ops_per_s"] > 0 and f["workers_by_rate"] >= 1 for f in fleets)
    table = path.with_suffix(".md").read_text()
    assert "| jobs/min |" in table and "| 100,000 |" in table
