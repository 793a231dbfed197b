"""The compile task: lock, compile in the engine child, upload, complete.

One message is one bundle with its entries and options. The task recomputes
the compile key from the bundle it received (a key claimed by a client is
never trusted), takes the key's lock, runs the engine in a child process
while one thread renews the lock every ttl/3 from the acquire to the completing
call, writes outputs then the manifest (create-once), and completes with one
token-checked Lua call that sets the result, publishes on the done channel
and releases the lock.

A task that finds the lock taken does not wait in its pool slot: it re-checks
once after the lock's remaining TTL (a countdown, no slot held), and takes
the key over if the lock vanished with no result.

Only the holder of the key's lock, whose bundle was verified to produce the
key, tells the key's waiters anything, and only through the lock's completing
Lua call (a result, a limit hit, a crash verdict, a failure no retry follows).
Every other verdict (a refused bundle, a bundle missing from the store, a
request redelivered too often, an unexpected error before the lock) is about
that request: it goes to its own submitter alone (``announce_refusal``), so a
forged message can never fail an honest submitter's wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from celery import Task

from ..app import app
from ..bundle.model import Bundle
from ..coordination import commits
from ..coordination.events import done_message
from ..coordination.lock import Acquired, Lock
from ..coordination.renewal import Renewal
from ..errors import (
    KIND_INFRA,
    KIND_INVALID,
    BundleMissing,
    EngineCrash,
    InfrastructureError,
    InvalidInput,
    KeyMismatch,
    LockLost,
    StoreError,
)
from ..observability import signals as instrument
from . import acks, pipeline
from .context import WorkerContext, context

log = logging.getLogger(__name__)

#: Seconds before the n-th retry of an infrastructure failure: 1, 2, 4, ... capped.
RETRY_BACKOFF_MAX = 30.0
#: Result reads of one message: each acquire refused for a new result reads again.
LOOKUPS = 3
#: Extra seconds after a lock's remaining TTL before a deferred task re-checks.
DEFER_SLACK = 0.2


def _backoff(retries: int) -> float:
    return min(RETRY_BACKOFF_MAX, 2.0**retries)


@app.task(
    name="scssq.compile",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
    Request=acks.Request,
)
def compile_bundle(self: Task, request: dict[str, Any]) -> str:
    """Compile one bundle's entries under its compile key; returns the outcome name."""
    ctx = context(self.request.hostname)
    try:
        job = pipeline.Job.from_request(request)
    except InvalidInput as e:
        log.error("refusing malformed compile request: %s", e)
        pipeline.refuse_malformed(ctx, request, e)
        return "refused"
    deliveries = _count_delivery(ctx, request, self.request.id, self.request.retries)
    if deliveries > ctx.settings.max_deliveries:  # not verified yet: its submitter alone
        message = _poison_message(job, deliveries - 1)
        pipeline.announce_refusal(ctx, job.key, job.submit, KIND_INFRA, message)
        return "poison"
    try:
        return _run(self, ctx, job)
    except InvalidInput as e:  # the request's own bundle: hostile or malformed, never retried
        log.error("refusing the bundle of %s: %s", job.describe(), e)
        pipeline.announce_refusal(
            ctx, job.key, job.submit, KIND_INVALID, f"the worker refused the bundle: {e}"
        )
        return "refused"
    except BundleMissing as e:  # about this request only: the key's waiters keep waiting
        log.error("no valid bundle for %s: %s", job.describe(), e)
        pipeline.announce_refusal(ctx, job.key, job.submit, KIND_INFRA, str(e))
        return "refused"
    except InfrastructureError as e:
        return _retry_or_fail(self, ctx, job, e)
    except redis.RedisError as e:
        return _retry_or_fail(self, ctx, job, InfrastructureError(f"Redis failed: {e}"))
    except Exception as e:  # a bug before the lock: tell the submitter now, not at its timeout
        log.exception("compile of %s failed unexpectedly", job.key[:12])
        instrument.capture_fault(e, retries=int(self.request.retries))
        pipeline.announce_refusal(ctx, job.key, job.submit, KIND_INFRA, _unexpected(e))
        return "failed"


def _unexpected(error: BaseException) -> str:
    return f"unexpected worker error ({type(error).__name__}: {error})"


def _count_delivery(ctx: WorkerContext, request: Any, task_id: str | None, retries: int) -> int:
    """Count deliveries of this exact message (body, task id, retry), not of a task id a
    sender may repeat in other messages: another message never adds to an honest count."""
    body = json.dumps([request, task_id, retries], sort_keys=True, default=str)
    return _count(ctx, ctx.keys.deliveries(hashlib.sha256(body.encode()).hexdigest()))


def _poison_message(job: pipeline.Job, times: int) -> str:
    return (
        f"compiling {job.entries_text} killed its worker {times} times; giving up (the engine "
        "likely crashes on these sources; the bound is SCSSQ_MAX_DELIVERIES)"
    )


def _count(ctx: WorkerContext, key: str) -> int:
    """INCR a crash counter that expires long after any redelivery."""
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, ctx.settings.visibility_timeout * 4)
    return int(pipe.execute()[0])


def _run(task: Task, ctx: WorkerContext, job: pipeline.Job) -> str:
    bundle: Bundle | None = None
    mapped = False
    for _ in range(LOOKUPS):
        found = pipeline.cached_result(ctx, job)
        if found.result is not None:
            pipeline.record_from_result(ctx, job, found.result)
            return "cached"
        if bundle is None:  # the claimed key is proven from the bundle before its lock
            bundle, job = pipeline.verified_bundle(ctx, job)
            mapped = pipeline.record_mapping(ctx, job) != commits.CONFLICT
        lock = pipeline.new_lock(ctx, job.key)
        with instrument.span("lock.acquire"):
            acquired = lock.acquire(found.seen)
        if acquired is Acquired.RESULT_EXISTS:
            continue  # another holder completed the key since our read: read its result
        instrument.lock_acquired(bool(acquired))
        if not acquired:
            return _defer(task, ctx, job)
        return _hold(task, ctx, job, lock, bundle, mapped)
    log.warning("result of %s keeps changing and stays unusable; leaving it", job.key[:12])
    return "shared"


def _hold(
    task: Task, ctx: WorkerContext, job: pipeline.Job, lock: Lock, bundle: Bundle, mapped: bool
) -> str:
    """Compile holding the lock, which one renewal keeps from here to the completing call;
    a failure no retry follows is the verified holder's to announce to the key."""
    try:
        with Renewal(lock, ctx.settings.lock_ttl) as renewal:
            return _compile_holding(ctx, job, lock, renewal, bundle, mapped)
    except LockLost as e:
        log.warning("compile of %s abandoned: %s", job.key[:12], e)
        return "lost"
    except Exception as e:
        if not isinstance(e, InvalidInput) and _final(task, ctx, e):
            return _fail_holding(ctx, job, lock, e, int(task.request.retries))
        lock.release()
        raise
    except BaseException:
        lock.release()
        raise


def _final(task: Task, ctx: WorkerContext, error: Exception) -> bool:
    """True when no retry follows ``error``: a bug, or the last try's infrastructure failure."""
    if isinstance(error, (InfrastructureError, redis.RedisError)):
        return int(task.request.retries) >= ctx.settings.task_retries
    return True


def _fail_holding(
    ctx: WorkerContext, job: pipeline.Job, lock: Any, error: Exception, retries: int
) -> str:
    """The verified holder's last word: tell every waiter of the key, never cached."""
    if isinstance(error, redis.RedisError):
        error = InfrastructureError(f"Redis failed: {error}")
    if isinstance(error, InfrastructureError):
        log.error("compile of %s failed for good: %s", job.key[:12], error)
        message = _infra_message(error, retries)
    else:
        log.exception("compile of %s failed unexpectedly", job.key[:12])
        message = _unexpected(error)
    instrument.capture_fault(error, retries=retries)
    failure = {"status": "failed", "kind": KIND_INFRA, "message": message, "key": job.key}
    try:
        lock.complete(done_message(failure), None, ctx.settings.result_ttl)
    except redis.RedisError as e:  # the lock expires; waiters re-enqueue and see for themselves
        log.warning("could not announce the failure of %s: %s", job.key[:12], e)
    return "failed"


def _defer(task: Task, ctx: WorkerContext, job: pipeline.Job) -> str:
    """Another holder compiles: re-check after its lock's TTL without holding a slot."""
    pttl = int(ctx.redis.pttl(ctx.keys.lock(job.key)))
    countdown = max(pttl, 0) / 1000 + DEFER_SLACK
    expires = job.deadline - time.time()
    if expires <= countdown:
        return "shared"
    task.apply_async(
        kwargs={"request": job.to_request()},
        countdown=countdown,
        expires=expires,
        queue=ctx.settings.queue,
        kwargsrepr=job.describe(),
        headers={instrument.DEFERRED_AT: time.time()},  # its re-check's lock.wait starts here
    )
    return "deferred"


def _compile_holding(
    ctx: WorkerContext,
    job: pipeline.Job,
    lock: Lock,
    renewal: Renewal,
    bundle: Bundle,
    mapped: bool,
) -> str:
    # Counted per key, not per message: a redelivered message may be deferred (a new
    # message) while its dead holder's lock expires, and the count must survive that.
    attempts = ctx.keys.attempts(job.key)
    begun = _count(ctx, attempts)
    if begun > ctx.settings.max_deliveries:
        ctx.redis.delete(attempts)
        message = _poison_message(job, begun - 1)
        failure = {"status": "failed", "kind": KIND_INFRA, "message": message, "key": job.key}
        lock.complete(done_message(failure), None, ctx.settings.result_ttl)
        return "poison"
    try:
        pipeline.announce_progress(ctx, job, "started")
        workdir = _unpack(ctx, bundle)
        try:
            root = workdir / "src"
            with instrument.span("scss.compile"):
                result = pipeline.compile_entries(ctx, job, root, renewal.held)
            return pipeline.finish(ctx, job, lock, renewal, result, mapped=mapped)
        finally:  # after the waiters are woken: they need none of these files
            shutil.rmtree(workdir, ignore_errors=True)
    finally:  # this process lived to see the attempt end: it was no crash of the worker
        with contextlib.suppress(redis.RedisError):
            ctx.redis.delete(attempts)


def _unpack(ctx: WorkerContext, bundle: Bundle) -> Path:
    """Write the bundle under a fresh folder in SCSSQ_WORK_DIR (its ``src``); a full or
    broken folder is an infrastructure failure (retried), not the bundle's fault."""
    workdir: Path | None = None
    try:
        workdir = Path(tempfile.mkdtemp(prefix="scssq-", dir=ctx.settings.work_dir or None))
        root = workdir / "src"
        root.mkdir()
        pipeline.write_sources(bundle, root)
    except OSError as e:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        where = ctx.settings.work_dir or tempfile.gettempdir()
        raise InfrastructureError(
            f"cannot unpack the bundle under {where} (SCSSQ_WORK_DIR): {e.strerror or e}"
        ) from e
    return workdir


def _retry_or_fail(
    task: Task, ctx: WorkerContext, job: pipeline.Job, error: InfrastructureError
) -> str:
    retries = int(task.request.retries)
    if isinstance(error, KeyMismatch):  # about this request, not the key: tell its submitter
        log.error("refusing the compile request of %s: %s", job.describe(), error)
        pipeline.announce_refusal(ctx, job.key, job.submit, KIND_INFRA, str(error))
        return "refused"
    if retries >= ctx.settings.task_retries:
        # Before the lock (e.g. the named bundle is not in the store): this request's own.
        log.error("request of %s failed for good: %s", job.describe(), error)
        instrument.capture_fault(error, retries=retries)
        message = _infra_message(error, retries)
        pipeline.announce_refusal(ctx, job.key, job.submit, KIND_INFRA, message)
        return "failed"
    countdown = _backoff(retries)
    log.warning(
        "compile of %s failed (%s); retry %d in %gs", job.key[:12], error, retries + 1, countdown
    )
    raise task.retry(countdown=countdown, max_retries=ctx.settings.task_retries, exc=error)


def _infra_message(error: InfrastructureError, retries: int) -> str:
    tries = f" (after {retries + 1} tries)" if retries else ""
    if isinstance(error, StoreError):
        return f"artifact store failed{tries}: {error}"
    if isinstance(error, EngineCrash):
        return f"engine crashed{tries}: {error}"
    return f"{error}{tries}"


@app.task(name="scssq.record", bind=True, acks_late=True, ignore_result=True, Request=acks.Request)
def record_commit(self: Task, request: dict[str, Any]) -> str:
    """Record the commit mapping of a submit that needed no compile (a cache hit).

    Takes the compile request without its bundle; the mapping is written only
    when the result a worker stored for the key proves the claimed digest.
    """
    ctx = context(self.request.hostname)
    try:
        job = pipeline.Job.from_request(request)
    except InvalidInput as e:
        log.error("refusing malformed record request: %s", e)
        return "refused"
    raw = ctx.redis.get(ctx.keys.result(job.key))
    return pipeline.record_from_result(ctx, job, None if raw is None else json.loads(raw))
