"""A submit, start to end: the one path of ``scssq submit`` and of :class:`Client`.

1. Two round trips on the client's connection (:mod:`cli.transport`): ``HGET`` of the
   engine version the fleet published, then ``GET`` of the result of the compile key
   it gives and ``HGET`` of the commit's mapping.
2. :func:`decide` says what a stored result means. A hit is delivered (the CSS copied
   and checked), counted, and, when the commit is not mapped to these sources yet, a
   ``scssq.record`` task asks a worker to map it: in the same write as the count when
   the queue is on ``SCSSQ_REDIS_URL``, else in a write of its own on the broker's
   connection.
3. A miss (or a hit whose artifacts are gone: then the task repairs them) subscribes
   to the key's done channel, reads the result again once the subscription is
   confirmed (so a completion in between is never missed), and enqueues the compile
   unless another request holds the key's lock; then it blocks on the subscription.
   While it waits it sends nothing but one re-check of the result, the lock and the
   workers each time a wait capped by the lock's TTL runs out, and it enqueues once
   more when the lock vanished with no result (the holder died).

The client never writes scssq's keys: workers write locks, results and the commit
mapping (see :mod:`compiler_tasks.coordination.commits`), so a CI credential can be
limited to reading them, subscribing, counting and enqueueing (``deploy/redis-acl.conf``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from compiler_tasks.bundle.collect import collect
from compiler_tasks.bundle.model import Bundle
from compiler_tasks.coordination import commits
from compiler_tasks.coordination.fleet import store_mismatch
from compiler_tasks.errors import (
    ArtifactMissing,
    CompileError,
    ConfigError,
    FleetTimeout,
    InvalidInput,
    NoWorkers,
    RedisUnavailable,
    error_from_kind,
)
from compiler_tasks.keys import RedisKeys, compile_key
from compiler_tasks.observability import stats
from compiler_tasks.observability.sentry import publish_span, span, trace_headers
from compiler_tasks.protocol.jobs import Job
from compiler_tasks.protocol.messages import task_message
from compiler_tasks.protocol.resp import Refused
from compiler_tasks.settings import Settings
from compiler_tasks.store import Store
from compiler_tasks.store.bundles import upload_bundle

from .config import SubmitConfig
from .outputs import Artifacts, EntryOutput, SubmitResult
from .transport import Broken, Link, Subscription, retrying
from .wait import Wait

Progress = Callable[[str], None]
#: Prefix of the line printed (TTY or not) when no worker is alive.
NO_WORKER = "no worker alive"
#: Seconds a ``scssq.record`` task may wait in the queue: long enough for a busy fleet
#: to reach it (mapping a commit is cheap and idempotent), short enough not to pile up.
RECORD_EXPIRES = 600.0
#: Why nothing can be enqueued on a Redis where no worker ever ran (a worker publishes
#: its engine versions on start and they stay after it stops), and the fix.
NEVER_REGISTERED = (
    "no worker of prefix {0!r} has ever registered engine {1!r} at {2}, so no compile key "
    "can be computed and nothing is enqueued (a new Redis, or one that lost its data; a "
    "fleet scaled to zero cannot be woken before a worker has run once): start the fleet, "
    "one worker once is enough (celery -A compiler_tasks worker, or kubectl -n scssq "
    "scale deployment/scssq-worker --replicas=1), and retry"
)

#: What a stored result means for a submit (:func:`decide`).
MISS = "miss"  # nothing usable stored: compile (or wait for the compile under way)
DELIVER = "deliver"  # stored, and the commit is mapped to these sources
RECORD = "deliver and record"  # stored; the commit is not mapped yet: a worker maps it
CONFLICT = "deliver, warn and record"  # the commit was first mapped to other sources


def decide(result: dict[str, Any] | None, first: str | None, digest: str) -> str:
    """What a stored ``result`` means for a submit of ``digest`` whose commit was first
    mapped to ``first`` (None: not mapped). The CSS delivered is always the result of
    the submit's own sources: the mapping only decides what is recorded and said."""
    if result is None:
        return MISS
    if first is None:
        return RECORD
    return DELIVER if first == digest else CONFLICT


def stored_result(raw: Any) -> dict[str, Any] | None:
    """The result a worker stored (the raw GET reply): ok or a compile error, else None."""
    if not isinstance(raw, bytes):
        return None
    result = json.loads(raw)
    if not isinstance(result, dict) or result.get("status") not in ("ok", "error"):
        return None
    return result


def first_digest(mapping: Any) -> str | None:
    """The digest the commit was first mapped to, or None when it is not mapped."""
    first = commits.parse(mapping if isinstance(mapping, bytes) else None)
    return None if first is None else str(first.get("digest"))


class Client:
    """A connection to one fleet (its Redis, its broker, its store); one thread at a time."""

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name
        self.keys = RedisKeys(settings.prefix)
        self.redis = Link(settings, settings.redis_url, name)
        same = settings.broker_url == settings.redis_url
        self.broker = self.redis if same else Link(settings, settings.broker_url, name)
        self.artifacts = Artifacts(settings)

    @property
    def store(self) -> Store:
        return self.artifacts.store

    def close(self) -> None:
        self.redis.close()
        self.broker.close()

    def download(
        self, result: dict[str, Any], out: Path, targets: dict[str, Path] | None = None
    ) -> list[EntryOutput]:
        """Copy a result's outputs under ``out`` (or to ``targets``), checking each CSS."""
        return self.artifacts.download(result, out, targets)

    def engine_version(self, engine: str) -> str:
        """The exact engine version the fleet published; NoWorkers if none ever did."""
        (raw,) = self.redis.call(("HGET", self.keys.engines, engine))
        if not isinstance(raw, bytes):
            shown = self.redis.shown
            raise NoWorkers(NEVER_REGISTERED.format(self.settings.prefix, engine, shown))
        return raw.decode()

    def push(self, task: str, job: Job, expires: float) -> tuple[str, str, str]:
        """The ``LPUSH`` of ``task`` for ``job`` onto the queue (Celery's protocol 2)."""
        queue, request = self.settings.queue, {"request": job.to_request()}
        message = task_message(
            task, request, queue, expires_in=expires, kwargsrepr=job.describe(),
            extra_headers=trace_headers(),
        )  # fmt: skip
        return ("LPUSH", queue, message)


def collect_bundle(config: SubmitConfig, settings: Settings) -> Bundle:
    """The submit's bundle, bounded by the settings; every entry must be in it."""
    bundle = collect(
        config.src,
        exclude=[config.out],
        max_bytes=settings.max_bundle_bytes,
        max_files=settings.max_bundle_files,
        rule=config.rule,
    )
    for entry in config.options.entries:
        if entry not in bundle.files:
            raise InvalidInput(f"entry {entry!r} is not a stylesheet under {config.src}")
    return bundle


def _quiet(_message: str) -> None:
    pass


def submit(
    client: Client,
    config: SubmitConfig,
    commit: str,
    *,
    timeout: float,
    wait: bool = True,
    progress: Progress | None = None,
    warn: Progress | None = None,
) -> SubmitResult:
    """Submit ``config``'s bundle for ``commit`` and (unless ``wait`` is off) fetch the CSS.

    ``progress`` gets what a terminal shows while waiting; ``warn`` gets what must be
    said even in CI (no worker alive, Redis retried). A broken connection before the
    wait starts the submit over until the deadline (every step is idempotent).
    """
    started = time.monotonic()
    bundle = collect_bundle(config, client.settings)
    run = Submit(client, config, bundle, commit, started, started + timeout, progress, warn)
    return retrying(lambda: run.attempt(wait), client.redis, started, run.deadline, run.warn)


class Submit:
    """One submit's state: what it asks for, its job, and what it says."""

    def __init__(
        self,
        client: Client,
        config: SubmitConfig,
        bundle: Bundle,
        commit: str,
        started: float,
        deadline: float,
        progress: Progress | None,
        warn: Progress | None,
    ) -> None:
        self.client, self.config, self.bundle, self.commit = client, config, bundle, commit
        self.started, self.deadline = started, deadline
        self.say, self.warn = progress or _quiet, warn or _quiet
        self.keys = client.keys

    def attempt(self, wait: bool) -> SubmitResult:
        """Look up, deliver a hit, else compile (or wait for the compile under way)."""
        client, options, keys = self.client, self.config.options, self.keys
        version = client.engine_version(options.engine)
        key = compile_key(self.bundle.digest, options, version)
        stored, mapping = client.redis.call(
            ("GET", keys.result(key)),
            ("HGET", keys.commit(self.config.project, self.commit), options.variant()),
        )
        self.job = Job(
            key=key,
            digest=self.bundle.digest,
            options=options,
            engine_version=version,
            commit=self.commit,
            project=self.config.project,
            submit=secrets.token_hex(8),
            deadline=time.time() + (self.deadline - time.monotonic()),
        )
        res = SubmitResult(self.config.project, self.commit, key, self.bundle.digest, "cached")
        first = first_digest(mapping)
        res.conflict = self._conflict(first)
        result = stored_result(stored)
        decision = decide(result, first, self.bundle.digest)
        if result is not None and decision != MISS:
            try:
                return self.deliver(res, result, record=decision != DELIVER)
            except ArtifactMissing:
                pass  # read again after subscribing: delivered, or repaired by a compile
        return self.compile(res, first, wait)

    def _conflict(self, first: str | None) -> str | None:
        """The loud warning when the commit was first mapped to other sources, else None."""
        if first is None or first == self.bundle.digest:
            return None
        return commits.conflict_message(self.config.project, self.commit, first, self.bundle.digest)

    def deliver(self, res: SubmitResult, result: dict[str, Any], record: bool) -> SubmitResult:
        """Copy the CSS of ``result`` (or raise its compile error), count the outcome and,
        with ``record``, ask a worker to map the commit (best effort, one write)."""
        res.warnings = str(result.get("warnings") or "")
        if result.get("status") == "ok":
            res.entries = self.client.download(result, self.config.out, self.config.targets)
        self._after(stats.COUNTERS.get(res.outcome), record)
        if result.get("status") == "error":
            err = CompileError(str(result.get("message")))
            err.warnings = res.warnings  # type: ignore[attr-defined]
            raise err
        res.seconds = time.monotonic() - self.started
        return res

    def _after(self, counter: str | None, record: bool) -> None:
        """Count the submit and send the record task; a failure only warns."""
        client = self.client
        commands: list[tuple[str, ...]] = []
        if counter is not None:
            commands.append(("INCR", stats.key(self.keys.prefix, counter)))
        try:
            with publish_span("scssq.record") if record else nullcontext():
                pushed = record and client.broker is client.redis  # in the same write
                if record:
                    push = client.push("scssq.record", self.job, RECORD_EXPIRES)
                    if pushed:
                        commands.append(push)
                    else:
                        client.broker.call(push)
                if commands:  # a refused count is ignored, a refused record task is not
                    replies = client.redis.call(*commands, check=False)
                    if pushed and isinstance(replies[-1], Refused):
                        raise client.redis.refusal(replies[-1], "LPUSH")
        except (Broken, RedisUnavailable) as e:
            if record:
                self.warn(
                    f"could not ask the fleet to record commit {self.commit[:12]} ({e}); "
                    "status/fetch may not know this commit"
                )

    def compile(self, res: SubmitResult, first: str | None, wait: bool) -> SubmitResult:
        """Subscribe, read again, enqueue unless a compile is under way, wait, deliver."""
        client, keys, key = self.client, self.keys, res.key
        subscription = Subscription(client.settings, keys.done(key), client.name)
        try:
            subscription.open()
            result, locked = self.check(key, stores=True)
            decision = decide(result, first, self.bundle.digest)
            if result is not None and decision != MISS:
                try:
                    return self.deliver(res, result, record=decision != DELIVER)
                except ArtifactMissing:
                    self.say("cached result's artifacts are gone from the store; recompiling")
                    self.job = dataclasses.replace(self.job, repair=True)
            if locked:
                res.outcome = "shared"
                self.say("waiting for another request's compile of the same sources")
            else:
                self.send()
                res.outcome = "queued"
                self.say(f"queued as {key[:12]}")
            if not wait:
                if res.outcome == "shared":  # the task finds the result later, maps the commit
                    self.send()
                res.seconds = time.monotonic() - self.started
                return res
            waited_for = "lock.wait" if res.outcome == "shared" else "compile.wait"
            with span(waited_for, key=key):  # another holder's compile, or our task's
                final = Wait(self, subscription, client.settings.lock_ttl).run()
        finally:
            subscription.close()
        if final.get("status") == "failed":
            raise error_from_kind(str(final.get("kind")), str(final.get("message")))
        res.outcome = "compiled" if final.get("submit") == self.job.submit else "shared"
        variant = self.config.options.variant()
        if final.get("mapped") == commits.announced(self.config.project, self.commit, variant):
            now: str | None = self.bundle.digest  # the task mapped it to our digest
        else:
            (mapping,) = client.redis.call(("HGET", keys.commit(res.project, res.commit), variant))
            now = first_digest(mapping)
        res.conflict = self._conflict(now) or res.conflict
        record = now is None or (res.conflict is not None and res.outcome != "compiled")
        return self.deliver(res, final, record)

    def check(self, key: str, stores: bool = False) -> tuple[dict[str, Any] | None, bool]:
        """The stored result and whether the lock is held, in one round trip; also says
        when no worker is alive and (``stores``) refuses a store the workers do not use."""
        since = str(time.time() - self.client.settings.worker_alive_window)
        commands: list[tuple[str, ...]] = [
            ("GET", self.keys.result(key)),
            ("EXISTS", self.keys.lock(key)),
            ("ZRANGEBYSCORE", self.keys.workers, since, "+inf"),
        ]
        if stores:
            commands.append(("ZRANGEBYSCORE", self.keys.stores, since, "+inf"))
        replies = self.client.redis.call(*commands, check=False)
        for command, reply in zip(commands[:2], replies, strict=False):
            if isinstance(reply, Refused):
                raise self.client.redis.refusal(reply, command[0])
        if stores and isinstance(replies[3], list):  # refused: an ACL from before stores
            problem = store_mismatch(self.client.settings, [s.decode() for s in replies[3]])
            if problem is not None:
                raise ConfigError(problem)
        if replies[2] == []:
            self.warn(
                f"{NO_WORKER} (no heartbeat in {self.client.settings.worker_alive_window:g} s "
                f"under prefix {self.client.settings.prefix!r}); waiting until the timeout "
                "for one to start"
            )
        return stored_result(replies[0]), bool(replies[1])

    def send(self) -> None:
        """Enqueue the compile, the bundle inline when small, else uploaded to the store."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FleetTimeout("the deadline passed before the compile could be enqueued")
        archive = self.bundle.archive()
        if len(archive) <= self.client.settings.inline_bundle_max:
            job = dataclasses.replace(self.job, inline=base64.b64encode(archive).decode("ascii"))
        else:
            own = upload_bundle(self.client.store, self.bundle.digest, self.job.submit, archive)
            job = dataclasses.replace(self.job, inline=None, own_upload=own)
        with publish_span("scssq.compile"):
            self.client.broker.call(self.client.push("scssq.compile", job, max(remaining, 1.0)))
