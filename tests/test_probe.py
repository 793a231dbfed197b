"""Worker liveness and readiness probes against real worker processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.procs import wait_for
from tests.support.proxy import TcpProxy

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


def test_liveness_goes_stale_while_the_worker_has_no_broker(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """The broker goes away (the service's Redis stays): the consumer restarts its
    blueprint and retries the connection, the heartbeat stops until it is back."""
    proxy = TcpProxy(redis_server.port)
    try:
        fleet = make_fleet(
            workers=1, liveness_max_age=2, broker_url=f"redis://127.0.0.1:{proxy.port}/0"
        )
        wait_for(lambda: fleet.probe("live", 1).returncode == 0, 10, "a fresh heartbeat")
        proxy.cut()
        wait_for(lambda: fleet.probe("live", 1).returncode == 1, 10, "a stale heartbeat")
        time.sleep(2.5)  # stays stale while the broker is away, however long
        stale = fleet.probe("live", 1)
        assert stale.returncode == 1 and "frozen or stopped" in stale.stdout
        assert fleet.workers[0].poll() is None  # still running: retrying the broker
        proxy.restore()
        wait_for(lambda: fleet.probe("live", 1).returncode == 0, 30, "liveness after the outage")
        src = tmp_path / "src"
        src.mkdir()
        (src / "main.scss").write_text(".back { on: line; }\n")
        done = fleet.scssq(
            "submit",
            "a" * 40,
            "--src",
            str(src),
            "--entry",
            "main.scss",
            "--project",
            "demo",
            "--out",
            str(tmp_path / "out"),
            "--timeout",
            "30",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr + fleet.logs()
    finally:
        proxy.close()
