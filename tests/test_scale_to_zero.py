"""Scale to zero on real parts: redis-server, celery workers, scssq processes.

A pool scaled to zero (KEDA ``minReplicaCount: 0``, deploy/k8s/scale-to-zero) has no
worker alive. A submit must still enqueue, because the engine versions it computes
the compile key from stay in Redis once a worker has run; the queue it grows is what
wakes the pool (:class:`~tests.support.scaler.QueueScaler` does what KEDA does). On a
Redis where no worker ever ran nothing can be enqueued: the submit says so and exits 3.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sass

from tests.support.fleet import Fleet
from tests.support.scaler import QueueScaler
from tests.test_fleet import HASH1, make_src, submit_args

pytestmark = pytest.mark.integration

HERD = 4
SCSS = "$w: 3px;\n.z { border: $w solid; .inner { margin: $w * 2; } }\n"


def _scaled_to_zero(make_fleet) -> Fleet:
    """A fleet whose one worker ran once (publishing its engines) and stopped."""
    fleet = make_fleet(workers=1)
    fleet.stop_workers()
    assert fleet.redis.zcard(f"{fleet.prefix}:workers") == 0, "the stopped worker left"
    return fleet


def test_a_herd_from_zero_workers_wakes_the_pool_and_is_served(make_fleet, tmp_path: Path) -> None:
    fleet = _scaled_to_zero(make_fleet)
    src = make_src(tmp_path, {"main.scss": SCSS})
    with QueueScaler(fleet) as scaler:
        procs = [
            fleet.spawn(
                "submit",
                HASH1,
                *submit_args(src, tmp_path / f"o{i}"),
                "--timeout",
                "120",
                cwd=tmp_path,
            )
            for i in range(HERD)
        ]
        results = [(p.wait(timeout=150), *p.communicate()) for p in procs]
    assert all(code == 0 for code, _, _ in results), f"{results}\n--- workers:\n{fleet.logs()}"
    direct = sass.compile(filename=str(src / "main.scss"), output_style="expanded")
    for i in range(HERD):
        assert (tmp_path / f"o{i}" / "main.css").read_text() == direct
    assert len(fleet.engine_runs()) == 1, "one compile for the whole herd"
    assert scaler.woken == 1, "the queue woke exactly one worker"


def test_no_wait_at_zero_workers_leaves_the_compile_queued(make_fleet, tmp_path: Path) -> None:
    """What KEDA sees: the queue grows although no worker is alive."""
    fleet = _scaled_to_zero(make_fleet)
    src = make_src(tmp_path, {"main.scss": SCSS})
    proc = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), "--no-wait", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "no worker alive" in proc.stderr
    assert fleet.redis.llen(fleet.env["SCSSQ_QUEUE"]) == 1


def test_a_redis_where_no_worker_ever_ran_exits_3_naming_the_fix(
    make_fleet, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=0)
    src = make_src(tmp_path, {"main.scss": SCSS})
    proc: subprocess.CompletedProcess[str] = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), "--timeout", "600", cwd=tmp_path
    )
    assert proc.returncode == 3
    assert "has ever registered engine 'libsass'" in proc.stderr
    assert "one worker once is enough" in proc.stderr
    assert fleet.redis.llen(fleet.env["SCSSQ_QUEUE"]) == 0, "nothing was enqueued"
