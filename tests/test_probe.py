"""Worker liveness and readiness probes against real worker processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.procs import wait_for

pytestmark = pytest.mark.integration


def test_liveness_goes_stale_when_the_worker_is_frozen(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1, liveness_max_age=2)
    wait_for(lambda: fleet.probe("live", 1).returncode == 0, 10, "a fresh heartbeat")
    assert fleet.probe("ready", 1).returncode == 0
    worker = fleet.workers[0]
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        time.sleep(3)
        frozen = fleet.probe("live", 1)
        assert frozen.returncode == 1 and "frozen or stopped" in frozen.stdout
        assert fleet.probe("ready", 1).returncode == 1
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    wait_for(lambda: fleet.probe("live", 1).returncode == 0, 10, "liveness after SIGCONT")


def test_probe_without_a_worker_fails_with_a_reason(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=0)
    proc = fleet.probe("live", 7)
    assert proc.returncode == 1 and "no heartbeat file" in proc.stdout
    bad = fleet.probe("sideways", 1)
    assert bad.returncode == 2
