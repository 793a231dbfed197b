"""``scssq submit`` as one process: a cache hit first, else the full client.

Most CI submits are repeats, so the hit is what a fleet's users pay most often;
``bench/hit.py`` holds it to half of compiling locally. A fresh process cannot
afford redis-py (about 100 ms to import, with asyncio), so :func:`cached` reads
with :mod:`compiler_tasks.protocol.resp` in two pipelined round trips, plus one write:

1. ``HGET <prefix>:engines <engine>`` (plus AUTH/SELECT in the same write);
2. ``GET <prefix>:result:<key>`` and the commit mapping's ``HGET``;
3. after the artifacts are written: ``INCR`` of the hit counter (and the record
   task's ``LPUSH`` when the commit needs mapping).

It answers every cache hit whose result is stored and readable (a compile error
is a hit too). A commit not yet mapped to this bundle (a new push of unchanged
styles, the usual CI case) or first mapped to other sources (reported as a
conflict) is recorded the way the full client does it: a ``scssq.record`` task,
here built with :mod:`compiler_tasks.protocol.messages` and pushed in the same write as
the hit counter. Anything else (no result, an artifact gone from the store, a
Redis error, a URL option it does not know, a broker other than
``SCSSQ_REDIS_URL``) returns None and :func:`submit` goes the full way
(:mod:`cli.client`: the same one-round-trip check with redis-py, then it
subscribes, reads again, enqueues, retries and reports). Reading before
subscribing is safe because a miss is read again after the subscription.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from compiler_tasks.bundle.collect import collect
from compiler_tasks.bundle.model import Bundle
from compiler_tasks.coordination import commits
from compiler_tasks.errors import ArtifactMissing, CompileError, InvalidInput
from compiler_tasks.keys import RedisKeys, compile_key
from compiler_tasks.observability import stats
from compiler_tasks.protocol import sentinel
from compiler_tasks.protocol.jobs import Job
from compiler_tasks.protocol.messages import task_message
from compiler_tasks.protocol.resp import RespConnection, RespError
from compiler_tasks.settings import Settings

from .config import SubmitConfig
from .outputs import Artifacts, SubmitResult

Progress = Callable[[str], None]
#: Seconds the fast path waits for a connection before leaving it to the full client.
CONNECT_TIMEOUT = 5.0
#: Seconds a ``scssq.record`` task may wait in the queue: long enough for a busy fleet
#: to reach it (mapping a commit is cheap and idempotent), short enough not to pile up.
RECORD_EXPIRES = 600.0


def collect_bundle(config: SubmitConfig, settings: Settings) -> Bundle:
    """The submit's bundle, bounded by the settings; every entry must be in it."""
    bundle = collect(
        config.src,
        exclude=[config.out],
        max_bytes=settings.max_bundle_bytes,
        max_files=settings.max_bundle_files,
    )
    for entry in config.options.entries:
        if entry not in bundle.files:
            raise InvalidInput(f"entry {entry!r} is not a stylesheet under {config.src}")
    return bundle


def submit(
    settings: Settings,
    config: SubmitConfig,
    commit: str,
    *,
    timeout: float,
    wait: bool = True,
    progress: Progress | None = None,
    warn: Progress | None = None,
) -> SubmitResult:
    """Submit ``config``'s bundle for ``commit``: a cache hit here, else :mod:`cli.client`."""
    started = time.monotonic()
    bundle = collect_bundle(config, settings)
    if wait:
        hit = cached(settings, config, bundle, commit, started, started + timeout, warn)
        if hit is not None:
            return hit
    from .client import Client
    from .client import submit as full_submit

    client = Client(settings)
    try:
        return full_submit(
            client,
            config,
            commit,
            timeout=timeout,
            wait=wait,
            progress=progress,
            warn=warn,
            bundle=bundle,
            started=started,
        )
    finally:
        client.close()


def new_job(
    config: SubmitConfig,
    commit: str,
    key: str,
    digest: str,
    version: str,
    submit_id: str,
    deadline: float,
) -> Job:
    """The request a worker gets for this submit (``deadline`` is monotonic)."""
    return Job(
        key=key,
        digest=digest,
        options=config.options,
        engine_version=version,
        commit=commit,
        project=config.project,
        submit=submit_id,
        deadline=time.time() + (deadline - time.monotonic()),
    )


def cached(
    settings: Settings,
    config: SubmitConfig,
    bundle: Bundle,
    commit: str,
    started: float,
    deadline: float,
    warn: Progress | None = None,
) -> SubmitResult | None:
    """The submit's result if it is a cache hit, else None (see the module doc).

    A stored compile error is a hit too: CompileError, with the stored warnings.
    A commit not yet mapped (or first mapped to other sources: the conflict is
    reported) is recorded by pushing a ``scssq.record`` task onto the queue.
    """
    keys = RedisKeys(settings.prefix)
    options = config.options
    timeout = max(0.1, min(CONNECT_TIMEOUT, deadline - time.monotonic()))
    try:
        with sentinel.connect(settings, timeout) as conn:
            (version,) = conn.call(("HGET", keys.engines, options.engine))
            if not isinstance(version, bytes):
                return None  # no worker registered: the full client says so
            key = compile_key(bundle.digest, options, version.decode())
            raw, mapping = conn.call(
                ("GET", keys.result(key)),
                ("HGET", keys.commit(config.project, commit), options.variant()),
            )
            result = stored_result(raw)
            first = first_digest(mapping)
            if result is None or (
                first != bundle.digest and settings.broker_url != settings.redis_url
            ):
                return None  # recording needs the broker's own connection: the full client
            res = SubmitResult(config.project, commit, key, bundle.digest, "cached")
            res.warnings = str(result.get("warnings") or "")
            if first is not None and first != bundle.digest:
                res.conflict = commits.conflict_message(
                    config.project, commit, first, bundle.digest
                )
            if result["status"] == "ok":
                res.entries = Artifacts(settings).download(result, config.out)
            after: list[tuple[str, ...]] = [
                ("INCR", stats.key(keys.prefix, stats.COUNTERS["cached"]))
            ]
            if first != bundle.digest:
                job = new_job(
                    config,
                    commit,
                    key,
                    bundle.digest,
                    version.decode(),
                    secrets.token_hex(8),
                    deadline,
                )
                after.append(("LPUSH", settings.queue, record_message(job, settings.queue)))
            _finish(conn, after, commit, warn)
    except (OSError, RespError, ValueError, ArtifactMissing):
        return None
    if result["status"] == "error":
        err = CompileError(str(result.get("message")))
        err.warnings = res.warnings  # type: ignore[attr-defined]
        raise err
    res.seconds = time.monotonic() - started
    return res


def record_message(job: Job, queue: str) -> str:
    """The ``scssq.record`` task message asking a worker to map ``job``'s commit."""
    return task_message(
        "scssq.record",
        {"request": job.to_request()},
        queue,
        expires_in=RECORD_EXPIRES,
        kwargsrepr=job.describe(),
    )


def first_digest(mapping: Any) -> str | None:
    """The digest the commit was first mapped to, or None when it is not mapped."""
    first = commits.parse(mapping if isinstance(mapping, bytes) else None)
    return None if first is None else str(first.get("digest"))


def _finish(
    conn: RespConnection, commands: list[tuple[str, ...]], commit: str, warn: Progress | None
) -> None:
    """Count the hit and push the record task; best effort, like the full client's."""
    try:
        conn.call(*commands)
    except (OSError, RespError) as e:
        if len(commands) > 1 and warn is not None:
            warn(
                f"could not ask the fleet to record commit {commit[:12]} ({e}); "
                "status/fetch may not know this commit"
            )


def stored_result(raw: Any) -> dict[str, Any] | None:
    """The result a worker stored (the raw GET reply): ok or a compile error, else None."""
    if not isinstance(raw, bytes):
        return None
    result = json.loads(raw)
    if not isinstance(result, dict) or result.get("status") not in ("ok", "error"):
        return None
    return result
