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


#: Run with the fleet's environment: one long-lived Client submits, waits for a line on
#: stdin (the test kills the broker connections silently meanwhile), then submits again.
TWO_SUBMITS = """
import sys, time
from pathlib import Path
from cli.client import Client, submit
from cli.config import SubmitConfig
from compiler_tasks.keys import CompileOptions
from compiler_tasks.settings import Settings

src, out = Path(sys.argv[1]), Path(sys.argv[2])
client = Client(Settings.from_env())
config = SubmitConfig(src=src, out=out, project="demo", options=CompileOptions(("main.scss",)))
print(submit(client, config, "a" * 40, timeout=30).outcome, flush=True)
sys.stdin.readline()
(src / "main.scss").write_text(".after { drop: silent; }\\n")
started = time.monotonic()
second = submit(client, config, "b" * 40, timeout=40)
print(second.outcome, (out / "main.css").read_text().split()[0], round(time.monotonic() - started))
"""


def test_a_silently_dead_broker_connection_is_replaced(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """Every broker connection dies without a FIN or RST (a dropped NAT entry; the proxy
    drops what it gets, both ends keep an open socket; new connections get through).
    The long-lived client's enqueue on its pooled connection fails after
    SCSSQ_BROKER_SOCKET_TIMEOUT and is sent again on a new one, instead of waiting
    forever; the worker's overdue BRPOP is dropped after
    SCSSQ_BROKER_HEALTH_CHECK_INTERVAL and it consumes again. With kombu's defaults
    (no socket timeout) this client never returns."""
    proxy = TcpProxy(redis_server.port)
    try:
        fleet = make_fleet(
            workers=1,
            broker_url=f"redis://127.0.0.1:{proxy.port}/0",
            broker_socket_timeout=3,
            broker_health_check_interval=2,
            lock_ttl=2,  # the client's capped wait re-enqueues a message the dead BRPOP ate
        )
        src = tmp_path / "src"
        src.mkdir()
        (src / "main.scss").write_text(".before { drop: none; }\n")
        client = subprocess.Popen(
            [sys.executable, "-c", TWO_SUBMITS, str(src), str(tmp_path / "out")],
            env=fleet.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout is not None and client.stdin is not None
            assert client.stdout.readline().split() == ["compiled"]
            assert proxy.freeze() >= 2  # the client's and the worker's connections
            client.stdin.write("go\n")
            client.stdin.flush()
            out, err = client.communicate(timeout=60)
        finally:
            client.kill()
        assert out.split()[:2] == ["compiled", ".after"], err + fleet.logs()
        assert "dropping stale connection" in fleet.logs()
    finally:
        proxy.close()
