"""Real fleets for integration tests: celery worker processes on the test Redis.

Each fleet gets its own key prefix and queue, its own store folder (or S3
bucket), and its workers run in their own process groups so a test can stop
them completely. Clients run as real ``scssq`` processes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from .procs import stop_group, wait_for
from .redis_server import RedisServer

BIN = Path(sys.executable).parent
SCSSQ = str(BIN / "scssq")
CELERY = str(BIN / "celery")
#: The command the production image runs, minus what tests vary.
WORKER_ARGS = [
    "-A",
    "compiler_tasks.app",
    "worker",
    "--loglevel=INFO",
    "--without-mingle",
    "--without-gossip",
]


class Fleet:
    """Workers and client environment for one test."""

    def __init__(self, redis_url: str, tmp: Path, /, **settings: Any) -> None:
        self.tmp = tmp
        self.prefix = "t" + secrets.token_hex(5)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SCSSQ_")}
        self.env.update(
            {
                "SCSSQ_REDIS_URL": redis_url,
                "SCSSQ_PREFIX": self.prefix,
                "SCSSQ_QUEUE": self.prefix,
                "SCSSQ_STORE": f"file://{tmp / 'store'}",
                "SCSSQ_ENGINE_TRACE": str(tmp / "engine-trace.log"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update({f"SCSSQ_{k.upper()}": str(v) for k, v in settings.items()})
        self.workers: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.redis = redis.Redis.from_url(redis_url)

    def start_worker(
        self,
        concurrency: int = 2,
        wait: bool = True,
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        name: str | None = None,
    ) -> subprocess.Popen[bytes]:
        self.started += 1
        name = name or f"w{self.started}-{self.prefix}@%h"
        log = open(self.tmp / f"worker{self.started}.log", "ab")  # noqa: SIM115
        heartbeat = {"SCSSQ_HEARTBEAT_FILE": str(self.heartbeat_file(self.started))}
        proc = subprocess.Popen(
            [CELERY, *WORKER_ARGS, *extra_args, f"--concurrency={concurrency}", "-n", name],
            env={**self.env, **heartbeat, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.tmp,
        )
        self.workers.append(proc)
        if wait:
            self.wait_workers(len(self.workers))
        return proc

    def heartbeat_file(self, number: int) -> Path:
        """The liveness file of the ``number``-th worker started (1-based)."""
        return self.tmp / f"heartbeat-{number}"

    def probe(self, kind: str, number: int) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "SCSSQ_HEARTBEAT_FILE": str(self.heartbeat_file(number))}
        return subprocess.run(
            [sys.executable, "-m", "compiler_tasks.worker.probe", kind],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def wait_workers(self, count: int, timeout: float = 30) -> None:
        def ready() -> bool:
            for proc in self.workers:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}:\n{self.logs()}")
            return int(self.redis.zcard(f"{self.prefix}:workers")) >= count

        wait_for(ready, timeout, f"{count} workers of {self.prefix}", interval=0.1)

    def logs(self) -> str:
        """The last 4000 characters of each worker's log: for a failing assertion's message."""
        return "\n".join(text[-4000:] for text in self._log_texts())

    def full_logs(self) -> str:
        """Every worker's whole log: to look for a line in."""
        return "\n".join(self._log_texts())

    def _log_texts(self) -> list[str]:
        return [p.read_text(errors="replace") for p in sorted(self.tmp.glob("worker*.log"))]

    def engine_runs(self) -> list[str]:
        """One line per compile, written by the engine child processes themselves."""
        trace = self.tmp / "engine-trace.log"
        return trace.read_text().splitlines() if trace.exists() else []

    def scssq(
        self, *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SCSSQ, *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def spawn(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [SCSSQ, *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    def stop_workers(self) -> None:
        """Warm-stop every worker (SIGTERM to its process group) and forget it."""
        for proc in self.workers:
            stop_group(proc, grace=10)
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        self.redis.close()


@pytest.fixture
def make_fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(workers: int = 1, concurrency: int = 2, **settings: Any) -> Fleet:
        fleet = Fleet(redis_server.url, tmp_path, **settings)
        fleets.append(fleet)
        for _ in range(workers):
            fleet.start_worker(concurrency, wait=False)
        if workers:
            fleet.wait_workers(workers)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
