"""Celery's own convention: ``celery -A compiler_tasks worker`` and ``celery -A compiler_tasks
flower`` find the app (compiler_tasks/celery.py), while ``import compiler_tasks`` stays free
of Celery for the client's cache-hit path. Real processes on the test Redis.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import CELERY, WORKER_ARGS, Fleet
from tests.test_fleet import HASH1, make_src, ok, submit_args
from tests.test_flower import Flower, wait_for_value


def test_importing_the_package_imports_no_celery() -> None:
    code = "import compiler_tasks, sys; assert 'celery' not in sys.modules, sorted(sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_celery_finds_the_same_app_by_the_package_name() -> None:
    code = (
        "from celery.app.utils import find_app; import compiler_tasks.app as m; "
        "app = find_app('compiler_tasks'); assert app is m.app, app; print(app.main)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "scssq"


def start_worker(fleet: Fleet, app: str) -> None:
    """One ``celery -A <app> worker``, otherwise the production command, in the fleet."""
    fleet.started += 1
    heartbeat = {"SCSSQ_HEARTBEAT_FILE": str(fleet.heartbeat_file(fleet.started))}
    args = ["-A", app, *WORKER_ARGS[2:], "--concurrency=1", "-n", f"w1-{fleet.prefix}@%h"]
    assert WORKER_ARGS[:2] == ["-A", "compiler_tasks.app"]
    with open(fleet.tmp / f"worker{fleet.started}.log", "ab") as log:
        proc = subprocess.Popen(
            [CELERY, *args],
            env={**fleet.env, **heartbeat},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=fleet.tmp,
        )
    fleet.workers.append(proc)
    fleet.wait_workers(1)


@pytest.mark.integration
def test_worker_and_flower_started_with_the_package_name_serve_compiles(
    make_fleet: Any, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=0)
    start_worker(fleet, "compiler_tasks")
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    ok(fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "out"), cwd=tmp_path), fleet)
    assert (tmp_path / "out" / "main.css").read_text().startswith(".a")
    assert len(fleet.engine_runs()) == 1  # compiled by that worker

    flower = Flower(fleet, app="compiler_tasks")
    try:

        def ours() -> dict[str, Any] | None:
            workers = flower.json("/api/workers?refresh=1")
            found = {n: w for n, w in workers.items() if n.startswith(f"w1-{fleet.prefix}@")}
            return found or None

        workers = wait_for_value(ours, 20, "the worker in Flower")
        assert "scssq.compile" in str(next(iter(workers.values())).get("registered"))
    finally:
        flower.stop()
