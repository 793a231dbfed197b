"""Garbage collection of the store: objects nothing can reach any more are deleted.

What the store holds (names from :mod:`compiler_tasks.keys`):

* ``artifacts/<key>/<token>/<entry>.css`` (and ``.map``): a compile's outputs, under
  its lock holder's token;
* ``artifacts/<key>/manifest.json``: written once, after the outputs; a compile that
  finds one adopts it instead of its own outputs;
* ``bundles/<digest>.tar.gz`` and ``bundles/<digest>.<submit>.tar.gz``: archives a
  client uploaded for one request; only that request's compile reads them.

What reaches them (Redis, :class:`~compiler_tasks.keys.RedisKeys`):

* ``<prefix>:result:<key>``: the manifest a holder completed, with the outputs it
  names; set once with ``SCSSQ_RESULT_TTL`` and never refreshed (a hit reads it, it
  does not extend it), so an object's retention is its result's;
* ``<prefix>:lock:<key>``: a compile in flight, which may be writing anything under
  ``artifacts/<key>/`` before its result exists.

The rule (:func:`plan`): a key's artifacts go together, only when the key has no live
result, no lock, and every object of it is older than the grace period (``scssq gc
--grace``, the safety net: an in-flight compile, or a holder paused past its lock). A
bundle goes once it is older than the grace period (a request lives until its
``--timeout``). Nothing a live result names is ever selected, nor any path that is not
scssq's.

Deleting (:func:`collect`) races with compiles and hits, so it holds the key's own
compile lock while it deletes: taken only if the key still has no result
(:meth:`~compiler_tasks.coordination.lock.Lock.acquire`), so no compile of the key can
run meanwhile and adopt a manifest being deleted. The manifest goes first; the outputs
only once the lock is known to be still held. A compile of that key waits at most one
``SCSSQ_LOCK_TTL`` and then writes its own outputs and manifest; a client holding a
result read just before it expired finds its artifact missing and takes the repair path
(recompile), never wrong CSS.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from ..coordination.lock import Lock, Outcome
from ..errors import InvalidInput, StoreError
from ..keys import RedisKeys, manifest_path
from .base import Store, StoredObject

#: The folders of the store gc looks at; anything else there is never touched.
ARTIFACTS, BUNDLES = "artifacts/", "bundles/"
_ARTIFACT_RE = re.compile(r"^artifacts/([0-9a-f]{64})/")
_BUNDLE_RE = re.compile(r"^bundles/[0-9a-f]{64}(\.[A-Za-z0-9]{1,64})?\.tar\.gz\Z")
#: Keys read from Redis per pipelined round trip.
BATCH = 500


@dataclass(frozen=True)
class KeyState:
    """What Redis said about one compile key: its result (raw, None if none) and lock."""

    result: bytes | None = None
    locked: bool = False


@dataclass
class KeyPlan:
    """The objects of one key to delete: the manifest (if any) first, then the rest."""

    key: str
    manifest: StoredObject | None = None
    outputs: list[StoredObject] = field(default_factory=list)

    def objects(self) -> list[StoredObject]:
        return ([self.manifest] if self.manifest else []) + self.outputs


@dataclass
class Plan:
    """What :func:`plan` selected, and what it kept."""

    keys: list[KeyPlan] = field(default_factory=list)
    bundles: list[StoredObject] = field(default_factory=list)
    kept: int = 0
    kept_bytes: int = 0

    def objects(self) -> list[StoredObject]:
        return [o for k in self.keys for o in k.objects()] + self.bundles


def referenced(raw: bytes) -> set[str] | None:
    """The store paths a stored result names (its outputs), or None if it cannot be read
    (then nothing of its key may go)."""
    try:
        result = json.loads(raw)
        paths = {manifest_path(str(result["key"]))}
        for out in result.get("outputs", {}).values():
            paths.update(str(out[name]) for name in ("css", "map") if out.get(name))
    except (ValueError, TypeError, KeyError, AttributeError, InvalidInput):
        return None
    return paths


def key_of(path: str) -> str | None:
    """The compile key whose artifact ``path`` is, or None."""
    match = _ARTIFACT_RE.match(path)
    return match.group(1) if match else None


def plan(
    listing: Iterable[StoredObject], states: dict[str, KeyState], *, now: float, grace: float
) -> Plan:
    """Which listed objects nothing reaches any more; pure (see the module's rule).

    ``states`` holds what Redis said, read *after* the listing, for each key listed
    (a key missing from it counts as locked: unknown, kept).
    """
    live: set[str] = set()
    for state in states.values():
        if state.result is not None:
            live |= referenced(state.result) or set()
    by_key: dict[str, list[StoredObject]] = {}
    result = Plan()
    for obj in listing:
        key = key_of(obj.path)
        if key is not None:
            by_key.setdefault(key, []).append(obj)
        elif _BUNDLE_RE.match(obj.path) and obj.path not in live and now - obj.modified >= grace:
            result.bundles.append(obj)
        else:
            result.kept, result.kept_bytes = result.kept + 1, result.kept_bytes + obj.size
    for key, objects in sorted(by_key.items()):
        state = states.get(key, KeyState(locked=True))
        reachable = (
            state.locked
            or state.result is not None
            or any(o.path in live or now - o.modified < grace for o in objects)
        )
        if reachable:
            result.kept += len(objects)
            result.kept_bytes += sum(o.size for o in objects)
            continue
        manifest = manifest_path(key)
        result.keys.append(
            KeyPlan(
                key,
                next((o for o in objects if o.path == manifest), None),
                sorted((o for o in objects if o.path != manifest), key=lambda o: o.path),
            )
        )
    return result


def read_states(client: redis.Redis, rkeys: RedisKeys, keys: Iterable[str]) -> dict[str, KeyState]:
    """Each key's result and whether its lock is held, pipelined :data:`BATCH` at a time."""
    states: dict[str, KeyState] = {}
    todo = sorted(set(keys))
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.get(rkeys.result(key))
            pipe.exists(rkeys.lock(key))
        replies: list[Any] = pipe.execute()
        for i, key in enumerate(batch):
            states[key] = KeyState(replies[2 * i], bool(replies[2 * i + 1]))
    return states


@dataclass
class Report:
    """What one gc run found, selected and (with ``apply``) deleted."""

    applied: bool
    listed: int = 0
    listed_bytes: int = 0
    selected: list[StoredObject] = field(default_factory=list)
    deleted: int = 0
    deleted_bytes: int = 0
    #: Keys left alone because a compile or a result appeared since they were planned.
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def selected_bytes(self) -> int:
        return sum(o.size for o in self.selected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "listed": {"objects": self.listed, "bytes": self.listed_bytes},
            "selected": {
                "objects": len(self.selected),
                "bytes": self.selected_bytes,
                "paths": [o.path for o in self.selected],
            },
            "deleted": {"objects": self.deleted, "bytes": self.deleted_bytes},
            "skipped_keys": self.skipped,
            "failed": self.failed,
        }


def collect(
    store: Store,
    client: redis.Redis,
    rkeys: RedisKeys,
    *,
    grace: float,
    lock_ttl_ms: int,
    apply: bool,
    now: float | None = None,
) -> Report:
    """List the store, read what reaches each key, plan; with ``apply``, delete.

    The listing comes first: an object written after it is never a candidate, and any
    result or lock that exists by the time Redis is read protects its key.
    """
    listing = [*store.list(ARTIFACTS), *store.list(BUNDLES)]
    keys = {k for k in (key_of(o.path) for o in listing) if k is not None}
    states = read_states(client, rkeys, keys)
    chosen = plan(listing, states, now=time.time() if now is None else now, grace=grace)
    report = Report(apply, len(listing), sum(o.size for o in listing), chosen.objects())
    if apply:
        delete(store, client, rkeys, chosen, lock_ttl_ms=lock_ttl_ms, report=report)
    return report


def delete(
    store: Store,
    client: redis.Redis,
    rkeys: RedisKeys,
    chosen: Plan,
    *,
    lock_ttl_ms: int,
    report: Report,
) -> None:
    """Delete what ``chosen`` selected: each key under its compile lock, then bundles."""
    for key_plan in chosen.keys:
        _delete_key(store, Lock(client, rkeys, key_plan.key, lock_ttl_ms), key_plan, report)
    for bundle in chosen.bundles:
        _delete(store, bundle, report)


def _delete_key(store: Store, lock: Lock, key_plan: KeyPlan, report: Report) -> None:
    """Delete one key's objects while holding its compile lock (see the module)."""
    if not lock.acquire(None):  # a compile holds it, or a result appeared: reachable again
        report.skipped.append(key_plan.key)
        return
    try:
        if key_plan.manifest is not None and not _delete(store, key_plan.manifest, report):
            return
        if lock.renew() is Outcome.NOT_OWNER:  # held too long: a compile may have begun
            report.skipped.append(key_plan.key)
            return
        for obj in key_plan.outputs:
            _delete(store, obj, report)
    finally:
        lock.release()


def _delete(store: Store, obj: StoredObject, report: Report) -> bool:
    try:
        store.delete(obj.path)
    except StoreError as e:
        report.failed.append(str(e))
        return False
    report.deleted += 1
    report.deleted_bytes += obj.size
    return True
