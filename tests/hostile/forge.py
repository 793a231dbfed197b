"""Crafted compile requests for hostile-input tests: what a rogue CI credential can send.

A request is built the way ``cli/client.py`` builds it and sent with a real
Celery producer (JSON, the fleet's queue); the submitter's side is the real
:class:`compiler_tasks.coordination.events.Waiter`, subscribed before the send, so a test
sees exactly what a waiting ``scssq submit`` would see.
"""

from __future__ import annotations

import base64
import gzip
import io
import secrets
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

from compiler_tasks.bundle.model import Bundle
from compiler_tasks.coordination.events import Waiter
from compiler_tasks.errors import error_from_kind, exit_code_for
from compiler_tasks.keys import CompileOptions, RedisKeys, compile_key
from tests.support.archives import regular, special, targz
from tests.support.fleet import Fleet

COMMIT = "c" * 40
PROJECT = "hostile"


@contextmanager
def producer(fleet: Fleet, broker_url: str | None = None) -> Iterator[Celery]:
    """A Celery app that only sends, configured like the client's (JSON only)."""
    app = Celery("forge", broker=broker_url or fleet.env["SCSSQ_REDIS_URL"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=False,
    )
    try:
        yield app
    finally:
        app.close()


def engine_version(fleet: Fleet, engine: str = "libsass") -> str:
    raw = fleet.redis.hget(f"{fleet.prefix}:engines", engine)
    assert raw is not None, "the fleet has not registered its engines"
    return raw.decode()


def request(
    fleet: Fleet,
    *,
    archive: bytes | None = None,
    files: dict[str, bytes] | None = None,
    entries: tuple[str, ...] = ("main.scss",),
    digest: str | None = None,
    key: str | None = None,
    commit: str = COMMIT,
    inline: bool = True,
) -> dict[str, Any]:
    """A compile request like the client's; ``digest``/``key`` may be forged.

    Without ``digest`` the digest of ``files`` is used (or a random one for a raw
    ``archive``); without ``key`` the key is computed from the digest, as an
    honest client would.
    """
    if files is not None:
        bundle = Bundle.from_files(files)
        archive = bundle.archive()
        digest = digest or bundle.digest
    assert archive is not None
    digest = digest or secrets.token_hex(32)
    options = CompileOptions(entries=entries)
    version = engine_version(fleet)
    return {
        "v": 1,
        "key": key or compile_key(digest, options, version),
        "digest": digest,
        "options": options.as_dict(),
        "engine_version": version,
        "commit": commit,
        "project": PROJECT,
        "submit": secrets.token_hex(8),
        "deadline": time.time() + 60,
        "inline": base64.b64encode(archive).decode("ascii") if inline else None,
        "repair": False,
    }


def send_and_wait(
    fleet: Fleet, job: dict[str, Any], timeout: float = 20, task: str = "scssq.compile"
) -> dict[str, Any]:
    """Subscribe as the submitter, send ``job``, return the done result it receives."""
    waiter = Waiter(fleet.redis, RedisKeys(fleet.prefix), job["key"], submit=job["submit"])
    deadline = time.monotonic() + timeout
    with waiter:
        assert waiter.subscribe(deadline) is None, "a result already existed"
        send(fleet, job, task)
        return waiter.wait(deadline, cap=timeout)


def send(fleet: Fleet, job: dict[str, Any], task: str = "scssq.compile") -> None:
    with producer(fleet) as app:
        app.send_task(task, kwargs={"request": job}, queue=fleet.prefix)


def exit_code(result: dict[str, Any]) -> int:
    """The exit code ``scssq submit`` would give for a failed ``result``."""
    return exit_code_for(error_from_kind(str(result["kind"]), str(result["message"])))


def pax_header_bomb(size: int) -> bytes:
    """A small tar.gz whose first pax extended header expands to ``size`` bytes."""
    body = b" comment=" + b"a" * size + b"\n"
    length = len(body)
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    record = str(length).encode() + body
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = len(record)
    entry, data = regular("main.scss")
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=9) as gz:
        gz.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        gz.write(record + b"\0" * (-len(record) % 512))
        gz.write(entry.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512))
        gz.write(b"\0" * 1024)
    return stream.getvalue()


__all__ = ["regular", "special", "targz"]
