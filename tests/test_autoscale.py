"""Scale-down loses nothing: workers busy with a queue of compiles get SIGTERM.

When KEDA's HPA removes a pod, or a rollout or a node drain replaces it, Kubernetes
sends SIGTERM to the container's PID 1, tini, which forwards it to its child, the
celery main process (deploy/Dockerfile). Celery then shuts down warmly: it stops
consuming, lets the running compile finish and exits; the tasks still queued stay
in Redis for the other workers. The first test does exactly that to a real worker
in the middle of a queue and checks that every submit completes with its own CSS,
and that no compile was lost or run twice.

The second test is the harsher case of a SIGTERM to the worker's whole process
group (a shell's ``kill -TERM -PGID``, an init run with ``-g``): the pool process
and its engine die mid-compile. The task is redelivered (late ack, reject on
worker lost), the next holder takes the abandoned lock over after its TTL, and
every submit still completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.fleet import Fleet
from tests.support.procs import wait_for
from tests.test_fleet import LOOPS_PER_SECOND, make_src, slow_scss, submit_args

pytestmark = pytest.mark.integration

SUBMITS = 6
COMPILE_SECONDS = 2.5


def _start_queue(fleet: Fleet, tmp_path: Path) -> list[subprocess.Popen[str]]:
    """SUBMITS distinct slow compiles (different sources, so different keys)."""
    procs = []
    for i in range(SUBMITS):
        src = make_src(tmp_path, {"main.scss": slow_scss(COMPILE_SECONDS, f"t{i}")}, f"src{i}")
        procs.append(
            fleet.spawn(
                "submit",
                f"{i + 1:x}" * 40,
                *submit_args(src, tmp_path / f"out{i}"),
                "--timeout",
                "120",
                cwd=tmp_path,
            )
        )
    return procs


def _wait_all(
    fleet: Fleet, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        results.append((proc.returncode, out, err))
    failures = [r for r in results if r[0] != 0]
    assert not failures, f"{failures}\n--- workers:\n{fleet.logs()}"
    loops = int(COMPILE_SECONDS * LOOPS_PER_SECOND)
    for i in range(SUBMITS):
        css = (tmp_path / f"out{i}" / "main.css").read_text()
        assert f".t{i}" in css and f"n: {loops};" in css, css
    return results


def test_sigterm_to_a_busy_worker_is_a_warm_shutdown(make_fleet, tmp_path: Path) -> None:
    """SIGTERM as Kubernetes delivers it (to celery via tini): nothing lost, nothing redone."""
    fleet = make_fleet(workers=2, concurrency=1)
    procs = _start_queue(fleet, tmp_path)
    # Both workers compiling, four compiles still queued.
    wait_for(lambda: len(fleet.engine_runs()) >= 2, 60, "both workers to be compiling")
    victim = fleet.workers[0]
    os.kill(victim.pid, signal.SIGTERM)
    # The replacement a rollout (or the next scale-up) brings.
    fleet.start_worker(concurrency=1, wait=False)
    # The victim finishes the compile it was running, then exits cleanly.
    assert victim.wait(60) == 0, fleet.logs()
    log = (tmp_path / "worker1.log").read_text()
    after = log[log.index("Warm shutdown") :]
    assert "Task scssq.compile[" in after and "succeeded" in after, log
    results = _wait_all(fleet, procs, tmp_path)
    runs = fleet.engine_runs()
    assert len(runs) == SUBMITS, f"a compile was lost or run twice: {runs}\n{fleet.logs()}"
    outcomes = [out.split()[0] for _, out, _ in results]
    assert outcomes == ["compiled"] * SUBMITS, outcomes
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []


def test_sigterm_to_a_whole_worker_group_still_loses_no_submit(make_fleet, tmp_path: Path) -> None:
    """The pool process and its engine die too: the task is redelivered, the lock is
    taken over after its TTL (short here), and every submit completes."""
    fleet = make_fleet(workers=2, concurrency=1, lock_ttl=2, visibility_timeout=300)
    procs = _start_queue(fleet, tmp_path)
    wait_for(lambda: len(fleet.engine_runs()) >= 2, 60, "both workers to be compiling")
    victim = fleet.workers[0]
    os.killpg(victim.pid, signal.SIGTERM)
    fleet.start_worker(concurrency=1, wait=False)
    victim.wait(60)
    _wait_all(fleet, procs, tmp_path)
    assert SUBMITS <= len(fleet.engine_runs()) <= SUBMITS + 1  # at most the killed one again
