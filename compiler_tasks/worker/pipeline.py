"""The steps of one compile job on a worker, free of Celery.

``tasks.py`` strings these together; each step here is small and testable:
parse the request, find a cached result, load and check the bundle, run the
engine per entry, upload outputs then the manifest (create-once), complete.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bundle.collect import read_archive, write_tree
from ..bundle.model import Bundle
from ..coordination import commits
from ..coordination.events import done_message, progress_message
from ..coordination.lock import Lock, Outcome
from ..coordination.renewal import Renewal
from ..engines.base import EngineAborted, EngineOutput, request_for
from ..errors import (
    KIND_INVALID,
    KIND_LIMIT,
    KIND_TIMEOUT,
    CompileError,
    CompileTimeout,
    InvalidInput,
    KeyMismatch,
    LimitExceeded,
    LockLost,
)
from ..keys import (
    artifact_dir,
    compile_key,
    css_name,
    manifest_path,
    validate_key,
)
from ..observability.sentry import span
from ..protocol.jobs import Job
from ..store import presigned
from ..store.bundles import load_uploaded
from .context import WorkerContext, installed_engines

log = logging.getLogger(__name__)


def check_key(job: Job, digest: str) -> str:
    """Recompute the key from what arrived; refuse to compile under another key.

    Returns this worker's exact engine version, the one the key was proven with.
    """
    version = installed_engines().get(job.options.engine)
    if version is None:
        raise KeyMismatch(f"this worker has no engine {job.options.engine!r}")
    key = compile_key(digest, job.options, version)
    if key != job.key:
        raise KeyMismatch(
            f"compile key mismatch: the client claimed {job.key[:12]} for engine "
            f"{job.engine_version!r}, this worker computes {key[:12]} with {version!r}"
        )
    return version


@dataclass
class Compiled:
    """What the engine produced for all entries of a job."""

    outputs: dict[str, EngineOutput] = field(default_factory=dict)
    error: str | None = None
    #: A fleet limit hit (kind, message): announced, never cached (invariant 6).
    limit: tuple[str, str] | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def new_lock(ctx: WorkerContext, key: str) -> Lock:
    return Lock(ctx.redis, ctx.keys, key, ctx.settings.lock_ttl_ms)


@dataclass(frozen=True)
class Lookup:
    """What a task read under the key's result: ``result`` if usable, and the raw
    value it read (``seen``, None if none) for the acquire to compare atomically."""

    result: dict[str, Any] | None
    seen: bytes | None


def cached_result(ctx: WorkerContext, job: Job) -> Lookup:
    """The stored result if it exists and its manifest (and, on repair, outputs) do."""
    raw = ctx.redis.get(ctx.keys.result(job.key))
    if raw is None:
        return Lookup(None, None)
    result: dict[str, Any] = json.loads(raw)
    if not ctx.store.exists(manifest_path(job.key)):
        return Lookup(None, raw)
    if job.repair and result.get("status") == "ok":
        for out in result.get("outputs", {}).values():
            paths = [out["css"]] + ([out["map"]] if out.get("map") else [])
            if not all(ctx.store.exists(p) for p in paths):
                ctx.store.delete(manifest_path(job.key))
                return Lookup(None, raw)
    return Lookup(result, raw)


def announce_progress(ctx: WorkerContext, job: Job, event: str) -> None:
    ctx.redis.publish(
        ctx.keys.done(job.key),
        progress_message(event, worker=ctx.hostname, submit=job.submit),
    )


def announce_refusal(ctx: WorkerContext, key: str, submit: str, kind: str, message: str) -> None:
    """Tell only the submitter whose own request was refused (``for``: its submit id).

    A refusal is about one request (its archive, its claimed key, its bundle
    missing from the store, its redeliveries, an error before its lock), not
    about the key: other waiters on the channel ignore it, so a forged request
    can never fail an honest submitter's wait. Only the key's verified lock
    holder tells every waiter, through :meth:`Lock.complete`.
    """
    result = {"status": "failed", "kind": kind, "message": message, "key": key, "for": submit}
    ctx.redis.publish(ctx.keys.done(key), json.dumps(done_message(result)))


def refuse_malformed(ctx: WorkerContext, request: Any, error: InvalidInput) -> bool:
    """Announce the refusal of an unparsable request to its submitter, if it names one."""
    if not isinstance(request, dict):
        return False
    key, submit = str(request.get("key", "")), str(request.get("submit", ""))
    if not (submit.isascii() and submit.isalnum() and len(submit) <= 64):
        return False
    try:
        validate_key(key)
    except InvalidInput:
        return False
    announce_refusal(ctx, key, submit, KIND_INVALID, f"the worker refused the request: {error}")
    return True


def verified_bundle(ctx: WorkerContext, job: Job) -> tuple[Bundle, Job]:
    """The job's bundle, checked to be what the claimed digest and key say (else refused),
    and the job with the engine version this worker runs in place of the client's claim.

    Runs before the key's lock is touched: a request whose bundle does not
    prove its key never holds, announces or caches anything under that key.
    """
    bundle = load_bundle(ctx, job)
    if bundle.digest != job.digest:
        raise KeyMismatch(
            f"bundle digest {bundle.digest[:12]} differs from the claimed {job.digest[:12]}"
        )
    version = check_key(job, bundle.digest)
    return bundle, dataclasses.replace(job, engine_version=version)


def record_mapping(ctx: WorkerContext, job: Job) -> str:
    """Map the job's (project, commit, variant) to its key; call once the key is verified."""
    outcome = commits.record(
        ctx.redis,
        ctx.keys,
        ctx.settings.result_ttl,
        project=job.project,
        commit=job.commit,
        options=job.options,
        key=job.key,
        digest=job.digest,
        engine_version=job.engine_version,
    )
    if outcome == commits.CONFLICT:
        log.warning(
            "commit %s of %r was first mapped to other sources; recorded %s as a conflict",
            job.commit[:12],
            job.project,
            job.digest[:12],
        )
    return outcome


def record_from_result(ctx: WorkerContext, job: Job, result: dict[str, Any] | None) -> str:
    """Record the mapping of a cache hit once a stored result proves the job's key."""
    if not commits.key_matches(job.key, job.digest, job.options, result):
        log.warning(
            "not mapping commit %s of %r: no stored result proves key %s for digest %s",
            job.commit[:12],
            job.project,
            job.key[:12],
            job.digest[:12],
        )
        return "refused"
    proven = str(result.get("engine_version")) if result else job.engine_version
    return record_mapping(ctx, dataclasses.replace(job, engine_version=proven))


def load_bundle(ctx: WorkerContext, job: Job) -> Bundle:
    settings = ctx.settings
    if job.inline is not None:
        if len(job.inline) > settings.inline_bundle_max * 4 // 3 + 8:
            raise InvalidInput("inline bundle is larger than SCSSQ_INLINE_BUNDLE_MAX")
        try:
            data = base64.b64decode(job.inline, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidInput(f"inline bundle is not base64: {e}") from e
    else:  # uploaded by a client: bounded, and believed only if it hashes to its name
        return load_uploaded(ctx.store, job.digest, job.submit, job.own_upload, settings)
    return read_archive(
        data, max_bytes=settings.max_bundle_bytes, max_files=settings.max_bundle_files
    )


def write_sources(bundle: Bundle, root: Path) -> None:
    write_tree(bundle, root)


def compile_entries(ctx: WorkerContext, job: Job, root: Path, held: Callable[[], bool]) -> Compiled:
    """Run the engine for every entry; ``held()`` False (the lock was lost) stops it.

    The lock is renewed by the job's one :class:`~compiler_tasks.coordination.renewal.Renewal`,
    not here: ``held`` only reads its state, so the engine is killed soon after a loss.
    """
    settings = ctx.settings
    engine = ctx.engine(job.options.engine)
    started = time.monotonic()
    deadline = started + settings.compile_timeout
    compiled = Compiled()
    for entry in job.options.entries:
        request = request_for(root, entry, job.options)
        try:
            output = engine.compile(
                request, deadline=deadline, tick=held, tick_interval=settings.lock_ttl / 3
            )
        except LimitExceeded as e:
            kind = KIND_TIMEOUT if isinstance(e, CompileTimeout) else KIND_LIMIT
            compiled.limit = (kind, str(e))
            break
        except CompileError as e:
            compiled.error = str(e)
            break
        except EngineAborted as e:
            raise LockLost(f"lock of {job.key[:12]} lost during the compile") from e
        compiled.outputs[entry] = output
        if output.warnings:
            compiled.warnings.append(output.warnings)
    compiled.seconds = time.monotonic() - started
    return compiled


def upload(ctx: WorkerContext, job: Job, lock: Lock, compiled: Compiled) -> dict[str, Any]:
    """Write outputs (under this holder's token), then the manifest once; return it."""
    base = f"{artifact_dir(job.key)}/{lock.token}"
    outputs: dict[str, Any] = {}
    # S3: presigned GET URLs, so a client reads a hit without boto3 (see presigned.py)
    presign = getattr(ctx.store, "presign_get", None)
    expires = presigned.expiry(ctx.settings.result_ttl)
    for entry, out in compiled.outputs.items():
        css_path = f"{base}/{css_name(entry)}"
        ctx.store.put(css_path, out.css)
        map_path = None
        if out.source_map is not None:
            map_path = css_path + ".map"
            ctx.store.put(map_path, out.source_map)
        outputs[entry] = {
            "css": css_path,
            "map": map_path,
            "size": len(out.css),
            "sha256": hashlib.sha256(out.css).hexdigest(),
        }
        if presign is not None:
            urls = {"css_url": presign(css_path, expires)}
            if map_path is not None:
                urls["map_url"] = presign(map_path, expires)
            outputs[entry].update({k: v for k, v in urls.items() if v})
    manifest: dict[str, Any] = {
        "key": job.key,
        "digest": job.digest,
        "engine": job.options.engine,
        "engine_version": job.engine_version,
        "status": "error" if compiled.error else "ok",
        "outputs": outputs,
        "warnings": "".join(compiled.warnings),
        "compile_seconds": round(compiled.seconds, 4),
    }
    if compiled.error:
        manifest["kind"] = "compile"
        manifest["message"] = compiled.error
    return store_manifest(ctx, job, manifest)


def store_manifest(ctx: WorkerContext, job: Job, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest once; return the one that stands.

    An existing manifest stands, unless it holds an error and this compile succeeded:
    the same key compiling proves that error was no pure function of the sources (a
    limit or the worker's disk, stored by an older worker), so the success replaces it.
    """
    path = manifest_path(job.key)
    data = json.dumps(manifest, sort_keys=True).encode()
    if ctx.store.put_once(path, data):
        return manifest
    existing: dict[str, Any] = json.loads(ctx.store.get(path))
    if existing.get("status") == "error" and manifest["status"] == "ok":
        log.warning("manifest of %s held an error the key now compiles; replacing it", job.key[:12])
        ctx.store.put(path, data)
        return manifest
    log.info("manifest of %s already existed; keeping it", job.key[:12])
    return existing


def finish(
    ctx: WorkerContext,
    job: Job,
    lock: Lock,
    renewal: Renewal,
    compiled: Compiled,
    *,
    mapped: bool = False,
) -> str:
    """Upload and complete atomically; a limit hit is announced but never cached.

    ``mapped``: this job's commit is mapped to its own digest (not a conflict). The
    announcement then says so, and waiters of the same commit need not read it back.
    """
    if compiled.limit is not None:
        kind, message = compiled.limit
        failure = {"status": "failed", "kind": kind, "message": message, "key": job.key}
        lock.complete(done_message(failure), None, ctx.settings.result_ttl)
        return kind
    if renewal.lost:
        return "lost"
    with span("artifact.upload"):
        manifest = upload(ctx, job, lock, compiled)
    announced = {**manifest, "submit": job.submit, "worker": ctx.hostname}
    if mapped:
        announced["mapped"] = commits.announced(job.project, job.commit, job.options.variant())
    outcome = lock.complete(done_message(announced), manifest, ctx.settings.result_ttl)
    if outcome is Outcome.NOT_OWNER:
        log.warning("lock of %s was lost: result not published", job.key[:12])
        return "lost"
    log.info(
        "compiled %s (%s) in %.3fs: %s",
        job.key[:12],
        job.entries_text,
        compiled.seconds,
        manifest["status"],
    )
    return "compiled" if manifest["status"] == "ok" else "compile-error"
