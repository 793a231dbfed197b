"""Regression tests of issue #22 on real parts: redis-server, celery workers, scssq processes.

Each test reproduces a defect that broke the architecture contract and asserts what a
user checks: exit codes, CSS bytes and the number of engine runs (counted by the engine
child processes themselves).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fleet import Fleet
from tests.test_fleet import HASH1, make_src, slow_scss, submit_args

pytestmark = pytest.mark.integration


def _ok(proc, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n--- workers:\n{fleet.logs()}"


def test_lock_held_across_many_short_entries(make_fleet, tmp_path: Path) -> None:
    """Item 1: 10 entries of ~0.5 s under a 2 s TTL (no single entry reaches ttl/3)."""
    fleet = make_fleet(workers=1, concurrency=1, lock_ttl=2, visibility_timeout=300)
    entries = [f"e{i}.scss" for i in range(10)]
    src = make_src(tmp_path, {name: slow_scss(0.5, tag=f"e{i}") for i, name in enumerate(entries)})
    args = submit_args(src, tmp_path / "out", entry=entries[0])
    for name in entries[1:]:
        args += ["--entry", name]
    proc = fleet.scssq("submit", HASH1, *args, "--timeout", "60", cwd=tmp_path, timeout=90)
    _ok(proc, fleet)
    runs = [line.split()[1] for line in fleet.engine_runs()]
    assert sorted(runs) == sorted(entries)  # each entry compiled once: one job
    for i, name in enumerate(entries):
        assert f".e{i}" in (tmp_path / "out" / name.replace(".scss", ".css")).read_text()
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []
