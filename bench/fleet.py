"""A private fleet for a benchmark: redis-server, celery workers, a store, and clients.

Reuses the test stack (:mod:`tests.support`): :class:`RedisServer` (Debian's
``redis-server`` on a free loopback port, no persistence), :class:`Fleet` (real
``celery -A compiler_tasks.app worker`` processes in their own process groups, with
``SCSSQ_ENGINE_TRACE`` so every engine run is counted) and, for an S3 store, moto's
standalone server on loopback (:func:`moto_server`).

A benchmark runs in its own process and uses one Redis server for its lifetime:
:meth:`BenchFleet.export` puts the fleet's ``SCSSQ_*`` (and ``AWS_*``) variables in
``os.environ``, because ``celeryconfig`` (imported by the client to enqueue) reads them
once per process.

Workers unpack bundles into a tmpfs folder (``SCSSQ_WORK_DIR`` under ``/dev/shm``) when
the machine has one, as the deployments in ``deploy/`` do; ``SCSSQ_BENCH_WORK_DIR=disk``
keeps the default (the system temp folder) to measure the difference.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import TMPFS, work_on_tmpfs
from cli.client import Client
from compiler_tasks.settings import Settings
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer
from tests.support.s3 import TEST_CREDENTIALS, moto_server


def _scratch() -> str | None:
    """A tmpfs folder for the workers' SCSSQ_WORK_DIR, or None for the system default."""
    return tempfile.mkdtemp(prefix="scssq-bench-", dir=TMPFS) if work_on_tmpfs() else None


#: Variables that would point boto3 somewhere else than the loopback server.
_AWS_NOISE = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION")


class BenchFleet:
    """``workers`` celery worker processes of ``concurrency`` each, on a private Redis.

    ``store`` is ``"file"`` (a folder under ``tmp``) or ``"s3"`` (a fresh bucket on a
    moto server started here). Extra keyword arguments become ``SCSSQ_*`` variables.
    """

    def __init__(
        self,
        tmp: Path,
        *,
        redis: RedisServer,
        workers: int = 2,
        concurrency: int = 1,
        store: str = "file",
        s3_endpoint: str | None = None,
        **settings: Any,
    ) -> None:
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.redis_server = redis
        self.scratch = None if "work_dir" in settings else _scratch()
        if self.scratch is not None:
            settings["work_dir"] = self.scratch
        self.fleet = Fleet(redis.url, tmp, **settings)
        self.workers = workers
        self.concurrency = concurrency
        if store == "s3":
            if s3_endpoint is None:
                raise ValueError("an S3 fleet needs s3_endpoint (see s3_server())")
            import boto3

            bucket = f"scssq-bench-{uuid.uuid4().hex[:12]}"
            aws = {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
            for name in _AWS_NOISE:
                self.fleet.env.pop(name, None)
            self.fleet.env.update(aws)
            self.fleet.env["SCSSQ_STORE"] = f"s3://{bucket}/bench"
            boto3.session.Session(
                aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
                region_name=aws["AWS_DEFAULT_REGION"],
            ).client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)

    @property
    def env(self) -> dict[str, str]:
        return self.fleet.env

    @property
    def prefix(self) -> str:
        return self.fleet.prefix

    def start(self) -> BenchFleet:
        for _ in range(self.workers):
            self.fleet.start_worker(self.concurrency, wait=False)
        self.fleet.wait_workers(self.workers, timeout=120)
        return self

    def stop(self) -> None:
        self.fleet.stop()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> BenchFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def export(self) -> None:
        """Make this fleet the process's default (``os.environ``) for clients and Celery."""
        for name in [k for k in os.environ if k.startswith("SCSSQ_")]:
            del os.environ[name]
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("SCSSQ_", "AWS_"))})

    def client(self, name: str | None = None) -> Client:
        return Client(self.settings(), name=name)

    def engine_runs(self) -> int:
        """Engine runs so far, counted by the engine processes themselves."""
        return len(self.fleet.engine_runs())

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.fleet.workers]

    def pause(self) -> None:
        """SIGSTOP every worker's process group (its queue fills without being consumed)."""
        for pid in self.worker_pids():
            os.killpg(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.worker_pids():
            os.killpg(pid, signal.SIGCONT)

    def busy(self) -> int:
        """Messages queued, reserved or held for a countdown (unacked) on this fleet's Redis."""
        r = self.fleet.redis
        queue = self.fleet.env["SCSSQ_QUEUE"]
        # kombu's queue list and its priority lists (``<queue>\x06\x16<n>``)
        lists: list[str | bytes] = [queue, *r.scan_iter(match=f"{queue}\x06\x16*")]
        queued = sum(int(r.llen(k)) for k in lists)
        return queued + int(r.hlen("unacked"))

    def wait_idle(self, timeout: float = 120.0, settle: float = 0.5) -> float:
        """Block until no message is queued or unacked for ``settle`` s; returns seconds waited.

        Deferred re-checks (a duplicate compile task re-checking after the lock's TTL) are
        unacked until they ran, so this also waits for them.
        """
        started = time.monotonic()
        quiet_since: float | None = None
        while time.monotonic() - started < timeout:
            if self.busy() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return time.monotonic() - started
            else:
                quiet_since = None
            time.sleep(0.1)
        raise TimeoutError(f"fleet {self.prefix} still busy after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.fleet.logs()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one benchmark (room for thousands of clients)."""
    server = RedisServer(extra=("--maxclients", "10000"))
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on loopback; yields its endpoint URL."""
    with moto_server() as endpoint:
        yield endpoint
