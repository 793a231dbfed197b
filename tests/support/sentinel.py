"""A Redis Sentinel setup on loopback for tests: a master, a replica, three Sentinels.

Real processes (Debian's ``redis-server`` and ``redis-sentinel``) with short timings, so a
failover takes a second or two: a master that stops answering for
:data:`DOWN_AFTER_MS` is down once two Sentinels agree, and the replica is promoted.
The master and the Sentinels take passwords, so a test also proves they travel.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel

from .procs import free_port, stop_group, wait_for

SERVICE = "scssq-ha"
#: Every client names the address: "localhost" need not resolve on a fresh machine.
LOOPBACK = "127.0.0.1"
#: The master's password (in SCSSQ_REDIS_URL) and the Sentinels' (SCSSQ_SENTINEL_PASSWORD).
MASTER_PASSWORD = "m@ster:pw/1"
SENTINEL_PASSWORD = "s3ntinel pw"
DOWN_AFTER_MS = 600
FAILOVER_TIMEOUT_MS = 3000


def binaries() -> tuple[str, str] | None:
    """redis-server and redis-sentinel, or None when either is missing."""
    server, sentinel = shutil.which("redis-server"), shutil.which("redis-sentinel")
    return (server, sentinel) if server and sentinel else None


class SentinelSetup:
    """The processes, their ports, and clients that follow the master."""

    def __init__(self) -> None:
        found = binaries()
        assert found is not None
        self.server_bin, self.sentinel_bin = found
        self.dir = Path(tempfile.mkdtemp(prefix="scssq-sentinel-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.master_port, self.replica_port = free_port(), free_port()
        self._server(self.master_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        self.sentinel_ports = [free_port() for _ in range(3)]
        for port in self.sentinel_ports:
            self._sentinel(port)
        self.sentinel = redis.sentinel.Sentinel(
            [("127.0.0.1", p) for p in self.sentinel_ports],
            sentinel_kwargs={"password": SENTINEL_PASSWORD, "socket_timeout": 1},
            password=MASTER_PASSWORD,
            socket_timeout=2,
        )
        wait_for(self._settled, 30, "the Sentinels to see the replica and each other", 0.2)

    def env(self) -> dict[str, str]:
        """What a fleet sets to find the master through these Sentinels. The URL's host
        and port name nothing that listens: only its password and database count."""
        url = f"redis://:{_quote(MASTER_PASSWORD)}@{SERVICE}:1/0"
        return {
            "SCSSQ_REDIS_URL": url,
            "SCSSQ_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
            "SCSSQ_SENTINEL_SERVICE": SERVICE,
            "SCSSQ_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }

    def master(self) -> redis.Redis:
        """A client of whichever server is the master now."""
        return self.sentinel.master_for(SERVICE, socket_timeout=2)

    def master_port_now(self) -> int:
        return int(self.sentinel.discover_master(SERVICE)[1])

    def direct(self, port: int) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=port, password=MASTER_PASSWORD, socket_timeout=2)

    def kill_master(self) -> None:
        """``kill -9`` the master: no goodbye, replication stops where it was."""
        os.killpg(self.procs[self.master_port].pid, signal.SIGKILL)

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: promote the replica while the master still runs."""
        sentinel = redis.Redis(
            host=LOOPBACK, port=self.sentinel_ports[0], password=SENTINEL_PASSWORD
        )
        sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)

    def wait_promoted(self, port: int, timeout: float = 30) -> None:
        """Until every Sentinel names the server on ``port`` as the master."""

        def named() -> bool:
            for sentinel_port in self.sentinel_ports:
                client = redis.Redis(host=LOOPBACK, port=sentinel_port, password=SENTINEL_PASSWORD)
                addr = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
                if int(addr[1]) != port:
                    return False
            return bool(self.direct(port).role()[0] == b"master")

        wait_for(named, timeout, f"the server on port {port} to be the master", 0.1)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc, grace=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _server(self, port: int, *extra: str) -> None:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self._dir(port)), "--maxmemory-policy", "noeviction"]
        args += ["--requirepass", MASTER_PASSWORD, "--masterauth", MASTER_PASSWORD, *extra]
        self._spawn(port, [self.server_bin, *args])
        wait_for(lambda: _pings(self.direct(port)), 10, f"redis-server on {port}")

    def _sentinel(self, port: int) -> None:
        conf = self._dir(port) / "sentinel.conf"  # Sentinel rewrites its own file
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self._dir(port)}\n"
            f'requirepass "{SENTINEL_PASSWORD}"\nsentinel sentinel-pass "{SENTINEL_PASSWORD}"\n'
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
            f'sentinel auth-pass {SERVICE} "{MASTER_PASSWORD}"\n'
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
        )
        self._spawn(port, [self.sentinel_bin, str(conf)])

    def _dir(self, port: int) -> Path:
        path = self.dir / str(port)
        path.mkdir(exist_ok=True)
        return path

    def _spawn(self, port: int, argv: list[str]) -> None:
        with open(self._dir(port) / "log", "ab") as log:
            self.procs[port] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _settled(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(
                host=LOOPBACK, port=port, password=SENTINEL_PASSWORD, socket_timeout=1
            )
            try:
                state: dict[str, Any] = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                return False
        info = self.direct(self.replica_port).info("replication")
        return bool(info.get("master_link_status") == "up")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.parent.name}:\n" + p.read_text(errors="replace")[-3000:]
            for p in sorted(self.dir.glob("*/log"))
        )


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@pytest.fixture
def sentinel_setup() -> Iterator[SentinelSetup]:
    if binaries() is None:
        pytest.skip("redis-sentinel is not installed (make redis installs it)")
    setup = SentinelSetup()
    yield setup
    setup.stop()
