"""The in-process client API: submit a bundle and wait, status, fetch, health.

A plain cache hit costs one round trip and imports neither Celery nor boto3: one
pipeline (:mod:`cli.lookup`) reads the engine version, the result of the key
computed from the version this client saw last, and the commit mapping; then it
copies the artifacts. Otherwise it subscribes, reads the result again, and only a
miss imports Celery to enqueue (and a hit of a commit not yet mapped, to ask a
worker to map it). A :class:`Client` is used by one thread at a time. ``scssq submit`` tries the
same hit without redis-py first (:mod:`cli.fastpath`).

The client never writes scssq's keys: workers write locks, results and the
commit mapping (see :mod:`compiler_tasks.coordination.commits`), so a CI credential can be
limited to reading them, subscribing and enqueueing (``deploy/redis-acl.conf``).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from compiler_tasks.bundle.model import Bundle
from compiler_tasks.coordination import commits
from compiler_tasks.coordination.connections import redis_client
from compiler_tasks.coordination.events import Waiter
from compiler_tasks.coordination.fleet import alive_workers, check_store
from compiler_tasks.errors import (
    ArtifactMissing,
    CompileError,
    FleetTimeout,
    RedisUnavailable,
    error_from_kind,
)
from compiler_tasks.keys import CompileOptions, RedisKeys
from compiler_tasks.observability.sentry import span
from compiler_tasks.settings import Settings, redact_url
from compiler_tasks.store import Store
from compiler_tasks.store.bundles import upload_bundle

from .config import SubmitConfig
from .fastpath import RECORD_EXPIRES, collect_bundle, new_job, stored_result
from .lookup import Lookups, Pending
from .outputs import Artifacts, EntryOutput, SubmitResult

Progress = Callable[[str], None]
#: Seconds a submit keeps trying a Redis it never reached (a wrong URL fails fast).
CONNECT_GRACE = 10.0
#: First pause between two attempts after a Redis error, doubling up to 2 s.
RETRY_PAUSE = 0.2
#: Prefix of the line printed (TTY or not) when no worker is alive.
NO_WORKER = "no worker alive"


class Client:
    """A connection to one fleet (its Redis, its store) for submits and queries."""

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings.prefix)
        self.redis = redis_client(settings, name)
        self.artifacts = Artifacts(settings)
        self.lookups = Lookups(settings, self.redis, self.keys)

    @property
    def store(self) -> Store:
        return self.artifacts.store

    @property
    def reached(self) -> bool:
        """Whether this client has talked to Redis once (later failures are blips)."""
        return self.lookups.reached

    def close(self) -> None:
        self.lookups.flush()  # the counts of delivered submits
        self.lookups.private.reset()
        self.redis.close()

    def engine_version(self, engine: str) -> str:
        """The exact engine version the fleet published; NoWorkers if none did."""
        return self.lookups.published(engine, self.redis.hget(self.keys.engines, engine))

    def first_mapping(
        self, project: str, commit: str, options: CompileOptions
    ) -> dict[str, Any] | None:
        """The first mapping of (project, commit, entries+options), or None (read-only)."""
        return commits.read(self.redis, self.keys, project, commit, options)

    def enqueue(
        self,
        job: dict[str, Any],
        deadline: float,
        describe: str,
        task: str = "scssq.compile",
        expires: float | None = None,
    ) -> None:
        """Send ``task`` (the compile); ride out a broker outage until ``deadline``.

        The message expires after ``expires`` seconds, by default at ``deadline``.
        """
        from compiler_tasks.app import app

        pause = 0.2
        while True:
            remaining = deadline - time.monotonic()
            try:
                app.send_task(
                    task,
                    kwargs={"request": job},
                    queue=self.settings.queue,
                    expires=max(remaining, 1.0) if expires is None else expires,
                    kwargsrepr=describe,
                )
                return
            except Exception as e:
                if remaining <= pause:
                    raise RedisUnavailable(
                        f"could not enqueue on {redact_url(self.settings.broker_url)}: {e}"
                    ) from e
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def download(self, result: dict[str, Any], out: Path) -> list[EntryOutput]:
        """Copy a result's outputs under ``out``, verifying each CSS's sha256."""
        return self.artifacts.download(result, out)


def submit(
    client: Client,
    config: SubmitConfig,
    commit: str,
    *,
    timeout: float,
    wait: bool = True,
    progress: Progress | None = None,
    warn: Progress | None = None,
    bundle: Bundle | None = None,
    started: float | None = None,
) -> SubmitResult:
    """Submit ``config``'s bundle for ``commit`` and (unless ``wait`` is off) fetch the CSS.

    ``progress`` gets what a terminal shows while waiting; ``warn`` gets what must
    be said even in CI (no worker alive). ``bundle`` and ``started`` (monotonic)
    come from :func:`cli.fastpath.submit` when it already collected the bundle.
    """
    started = time.monotonic() if started is None else started
    ahead = None
    try:
        if bundle is None:
            # The lookup for the digest this folder had last time runs while the sources
            # are checked (cli.lookup); it counts only if the digest is still that one.
            ahead = client.lookups.ahead(config, commit)
            bundle = collect_bundle(config, client.settings)
        client.lookups.remember(config, bundle.digest)
        return _retrying(
            client, config, bundle, commit, ahead, started, started + timeout, wait, progress, warn
        )
    finally:
        if ahead is not None:
            ahead.close()  # a bad bundle or an interrupt: its replies are not waited for


def _retrying(
    client: Client,
    config: SubmitConfig,
    bundle: Bundle,
    commit: str,
    ahead: Pending | None,
    started: float,
    deadline: float,
    wait: bool,
    progress: Progress | None,
    warn: Progress | None,
) -> SubmitResult:
    settings = client.settings
    pause = RETRY_PAUSE
    while True:
        pending, ahead = ahead, None  # a retry sends its own lookup
        try:
            return _submit(
                client,
                config,
                bundle,
                commit,
                pending,
                started,
                deadline,
                wait,
                progress,
                warn or (lambda _msg: None),
            )
        except (redis.ConnectionError, redis.TimeoutError) as e:
            # Redis blipped before the wait began: start over (subscribe, read and
            # enqueue are idempotent) until the deadline; a Redis never reached at all
            # gets only CONNECT_GRACE seconds (a wrong URL should not hang a CI job).
            give_up = deadline if client.reached else min(deadline, started + CONNECT_GRACE)
            if time.monotonic() + pause >= give_up:
                raise RedisUnavailable(f"Redis at {settings.redis_shown} unreachable: {e}") from e
            if pause == RETRY_PAUSE:
                (warn or (lambda _msg: None))(f"Redis unreachable ({e}); retrying")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
        except redis.RedisError as e:
            raise RedisUnavailable(
                f"Redis at {settings.redis_shown} failed during the submit: {e}"
            ) from e


def _submit(
    client: Client,
    config: SubmitConfig,
    bundle: Bundle,
    commit: str,
    pending: Pending | None,
    started: float,
    deadline: float,
    wait: bool,
    progress: Progress | None,
    warn: Progress,
) -> SubmitResult:
    say = progress or (lambda _msg: None)
    options = config.options
    # One round trip (two the first time) answers a plain hit (result stored, commit
    # mapped to this digest), the common case, before any subscription (a miss is read
    # again after it).
    found = pending.found_for(bundle.digest) if pending is not None else None
    if found is None:
        found = client.lookups.lookup(bundle.digest, options, config.project, commit)
    version, key, raw, mapping = found.version, found.key, found.result, found.mapping
    res = SubmitResult(config.project, commit, key, bundle.digest, "cached")
    first = commits.parse(mapping)
    hit = stored_result(raw) if first is not None and first.get("digest") == bundle.digest else None
    if hit is not None:
        try:
            return _deliver(client, res, hit, config.out, started)
        except ArtifactMissing:
            pass  # the wait below finds the result again and repairs it
    res.conflict = _conflict(res, first)
    check_store(client.settings, client.redis)  # the CSS must land where this client reads
    submit_id = secrets.token_hex(8)
    job_value = new_job(config, commit, key, bundle.digest, version, submit_id, deadline)
    job, describe = job_value.to_request(), job_value.describe()
    with Waiter(client.redis, client.keys, key, submit=submit_id) as waiter:
        result = waiter.subscribe(deadline)
        if result is not None:
            if first is None or res.conflict:  # no compile task of this submit maps it
                _record(client, job, deadline, describe, warn)
            try:
                return _deliver(client, res, result, config.out, started)
            except ArtifactMissing:
                say("cached result's artifacts are gone from the store; recompiling")
                job["repair"] = True
                result = None
        if waiter.lock_held():
            res.outcome = "shared"
            say("waiting for another request's compile of the same sources")
        else:
            _send(client, job, bundle, deadline, describe)
            res.outcome = "queued"
            say(f"queued as {key[:12]}")
        _check_workers(client, warn)
        if not wait:
            if res.outcome == "shared":  # the task finds the result later and maps the commit
                _send(client, job, bundle, deadline, describe)
            res.seconds = time.monotonic() - started
            return res
        reenqueued = False
        holder_seen = False

        def on_progress(event: dict[str, Any]) -> None:
            nonlocal holder_seen
            if event.get("event") == "started":
                holder_seen = True
                mine = event.get("submit") == submit_id
                say(
                    f"compiling on worker {event.get('worker')}"
                    if mine
                    else f"waiting for another request's compile on worker {event.get('worker')}"
                )

        def on_idle(lock_held: bool) -> None:
            nonlocal reenqueued, holder_seen
            try:
                _check_workers(client, warn)
            except redis.RedisError:
                return  # the wait itself notices the outage and reconnects
            # Once, or again each time a holder was seen and then vanished (it died).
            if not lock_held and (holder_seen or not reenqueued):
                reenqueued, holder_seen = True, False
                say("the compile's lock vanished with no result; enqueueing once more")
                _send(client, job, bundle, deadline, describe)

        try:
            waited_for = "lock.wait" if res.outcome == "shared" else "compile.wait"
            with span(waited_for, key=key):  # another holder's compile, or our task's
                final = waiter.wait(deadline, settings_cap(client.settings), on_progress, on_idle)
        except FleetTimeout as e:
            raise FleetTimeout(
                f"timed out after {deadline - started:g} s waiting for the fleet to compile "
                f"{key[:12]} ({e}); see `scssq health`"
            ) from e
    if final.get("status") == "failed":
        raise error_from_kind(str(final.get("kind")), str(final.get("message")))
    res.outcome = "compiled" if final.get("submit") == submit_id else "shared"
    if final.get("mapped") == commits.announced(config.project, commit, options.variant()):
        now: dict[str, Any] | None = {"digest": bundle.digest}  # the same key: our digest
    else:
        now = client.first_mapping(config.project, commit, options)
    res.conflict = _conflict(res, now) or res.conflict
    if now is None or (res.conflict and res.outcome != "compiled"):
        _record(client, job, deadline, describe, warn)
    return _deliver(client, res, final, config.out, started)


def _conflict(res: SubmitResult, first: dict[str, Any] | None) -> str | None:
    """The loud warning when the commit was first mapped to other sources, else None."""
    if first is None or first.get("digest") == res.digest:
        return None
    return commits.conflict_message(res.project, res.commit, str(first.get("digest")), res.digest)


#: Seconds a submit that needed no compile spends asking a worker to map its commit.
RECORD_TIMEOUT = 5.0


def _record(
    client: Client, job: dict[str, Any], deadline: float, describe: str, warn: Progress
) -> None:
    """Ask a worker to map this submit's commit (only workers write mappings).

    A submit whose own compile task ran is mapped by that task; a cache hit or
    a wait on another request's compile sends this small task instead. The
    worker maps the commit only if the result stored for the key proves the
    digest. Best effort: the CSS is the submit's own either way.
    """
    try:
        client.enqueue(
            {**job, "inline": None},
            min(deadline, time.monotonic() + RECORD_TIMEOUT),
            describe,
            task="scssq.record",
            expires=RECORD_EXPIRES,
        )
    except RedisUnavailable as e:
        warn(
            f"could not ask the fleet to record commit {str(job['commit'])[:12]} ({e}); "
            "status/fetch may not know this commit"
        )


def _check_workers(client: Client, warn: Progress) -> None:
    """Say so when no worker is alive, instead of waiting silently until the timeout."""
    if not alive_workers(client.settings, client.redis):
        warn(
            f"{NO_WORKER} (no heartbeat in {client.settings.worker_alive_window:g} s under "
            f"prefix {client.settings.prefix!r}); waiting until the timeout for one to start"
        )


def settings_cap(settings: Settings) -> float:
    """How long one blocking wait lasts before the result and lock are re-checked."""
    return settings.lock_ttl


def _send(
    client: Client, job: dict[str, Any], bundle: Bundle, deadline: float, describe: str
) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FleetTimeout("the deadline passed before the compile could be enqueued")
    archive = bundle.archive()
    if len(archive) <= client.settings.inline_bundle_max:
        job["inline"] = base64.b64encode(archive).decode("ascii")
    else:
        job["inline"] = None
        job["own_upload"] = upload_bundle(client.store, bundle.digest, job["submit"], archive)
    client.enqueue(job, deadline, describe)


def _deliver(
    client: Client, res: SubmitResult, result: dict[str, Any], out: Path, started: float
) -> SubmitResult:
    client.lookups.count(res.outcome)
    res.warnings = str(result.get("warnings") or "")
    if result.get("status") == "error":
        err = CompileError(str(result.get("message")))
        err.warnings = res.warnings  # type: ignore[attr-defined]
        raise err
    res.entries = client.download(result, out)
    res.seconds = time.monotonic() - started
    return res
