"""Worker liveness and readiness probes against real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def _probe(fleet, *args: str, heartbeat: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compiler_tasks.worker.probe", *args],
        env={**fleet.env, "SCSSQ_HEARTBEAT_FILE": heartbeat},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_named_workers_on_one_host_have_their_own_heartbeat(make_fleet, tmp_path: Path) -> None:
    """Issue #25 item 6: `-n w1@%h`, `-n w2@%h`: health sees both, each its own file."""
    fleet = make_fleet(workers=0)
    heartbeat = str(tmp_path / "heartbeat-{node}")
    for name in ("w1", "w2"):
        env = {"SCSSQ_HEARTBEAT_FILE": heartbeat}
        fleet.start_worker(1, wait=False, extra_env=env, name=f"{name}-{fleet.prefix}@%h")
    fleet.wait_workers(2)
    names = sorted(n.decode() for n in fleet.redis.zrange(f"{fleet.prefix}:workers", 0, -1))
    health = fleet.scssq("health", cwd=tmp_path)
    assert health.returncode == 0, health.stdout
    (line,) = [x for x in health.stdout.splitlines() if x.startswith("ok   workers: 2 alive: ")]
    assert sorted(line.split(": ", 2)[2].split(", ")) == names
    assert "WARN" not in health.stdout
    files = sorted(p.name for p in tmp_path.glob("heartbeat-*"))
    assert files == [f"heartbeat-{name}" for name in names]
    assert _probe(fleet, "live", names[1], heartbeat=heartbeat).returncode == 0
    either = _probe(fleet, "live", heartbeat=heartbeat)
    assert either.returncode == 1 and "2 heartbeat files match" in either.stdout


def test_two_workers_under_one_name_get_a_warning(make_fleet, tmp_path: Path) -> None:
    """Issue #25 item 6: what README's old command did (`celery@host` twice)."""
    fleet = make_fleet(workers=0)
    for _ in range(2):
        fleet.start_worker(1, wait=False, name=f"same-{fleet.prefix}@%h")
    fleet.wait_workers(1)
    instances = f"{fleet.prefix}:instances"
    wait_for(lambda: fleet.redis.zcard(instances) == 2, 30, "both workers' heartbeats")
    (name,) = [n.decode() for n in fleet.redis.zrange(f"{fleet.prefix}:workers", 0, -1)]
    health = fleet.scssq("health", cwd=tmp_path)
    assert health.returncode == 0, health.stdout
    assert f"WARN worker names: 2 workers answer as {name} (" in health.stdout
    assert "start each with its own name" in health.stdout
