"""A private redis-server for the test session, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from .procs import free_port, stop_group, wait_for


class RedisServer:
    """One redis-server process (no persistence unless asked)."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.extra = extra
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="scssq-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        args = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--protected-mode",
            "no",
            "--maxmemory-policy",
            "noeviction",
            *self.extra,
        ]  # later arguments win
        with open(self.dir / "redis.log", "ab") as log:
            proc = subprocess.Popen(
                [self.binary, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for(self._ready, 10, f"redis-server on port {self.port}")
        except TimeoutError as e:
            said = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{e}; redis-server said:\n{said}") from e
        return proc

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server (SIGTERM: it saves what persistence asks), start it again on
        the same port and data directory after ``down_for`` seconds."""
        stop_group(self.proc, grace=10)
        time.sleep(down_for)
        self.proc = self._start()

    def _ready(self) -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, **kwargs)

    def stop(self) -> None:
        stop_group(self.proc, grace=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
