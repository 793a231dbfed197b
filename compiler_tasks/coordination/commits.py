"""The commit mapping: (project, commit, entries + options) -> compile key.

CI names its work by commit hash; one commit may map to several keys (one per
variant: entries + options). Only workers write the mapping, and only after
they tied the key to a digest themselves: from the bundle a compile task
received, or (on a cache hit, through the small ``scssq.record`` task) from
the result a worker stored for that key. So the digest a mapping reports is
always the digest of the sources whose CSS it serves; a client credential can
neither replace a mapping nor point one at CSS of other sources.

The first mapping stays in place (``HSETNX``); a later one with another digest
is kept beside it under ``<prefix>:conflict:...`` (one field per variant and
digest, :func:`contenders`). Such a commit is *contested*: whoever submitted
it first may not be its owner, so ``status`` and ``fetch`` serve neither
digest unless the caller picks one (``--digest``). Clients only read, with
``HGET``/``HGETALL`` on their own connection (:mod:`cli.transport`): :func:`parse`
reads a mapping, :func:`contenders` the conflicts, and :func:`conflict_message` is
their warning.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

from ..keys import CompileOptions, RedisKeys, compile_key

#: Outcomes of :func:`record`.
FIRST = "first"  # this call created the mapping
SAME = "same"  # the mapping existed with the same digest
CONFLICT = "conflict"  # the mapping existed with another digest: recorded as a conflict


def parse(raw: bytes | None) -> dict[str, Any] | None:
    """A mapping as stored (the ``HGET`` reply), or None when the commit is not mapped."""
    return None if raw is None else dict(json.loads(raw))


def record(
    client: redis.Redis,
    keys: RedisKeys,
    ttl: int,
    *,
    project: str,
    commit: str,
    options: CompileOptions,
    key: str,
    digest: str,
    engine_version: str,
) -> str:
    """Map (project, commit, variant) -> key once; a later other digest is a conflict.

    Workers only: call it after checking that ``key`` is the compile key of
    ``digest`` (see :func:`key_matches`). Returns FIRST, SAME or CONFLICT.
    """
    variant = options.variant()
    value = json.dumps(
        {
            "key": key,
            "digest": digest,
            "options": options.as_dict(),
            "engine_version": engine_version,
            "at": time.time(),
        }
    )
    name = keys.commit(project, commit)
    pipe = client.pipeline(transaction=False)
    pipe.hsetnx(name, variant, value)
    pipe.hget(name, variant)
    created, existing = pipe.execute()
    if created:
        client.expire(name, ttl)
        return FIRST
    if json.loads(existing or "{}").get("digest") == digest:
        return SAME
    conflicts = keys.conflicts(project, commit)
    pipe = client.pipeline(transaction=False)
    pipe.hset(conflicts, f"{variant}:{digest}", value)  # every other digest, not the last
    pipe.expire(conflicts, ttl)
    pipe.execute()
    return CONFLICT


def contenders(conflicts: dict[bytes, bytes]) -> dict[str, list[dict[str, Any]]]:
    """Variant -> the later mappings with other digests (the ``HGETALL`` of the
    conflicts), oldest first. A field is ``variant:digest`` (``variant`` alone
    before every digest was kept: the value names the digest either way)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, raw in conflicts.items():
        variant = name.decode().split(":", 1)[0]
        found.setdefault(variant, []).append(dict(json.loads(raw)))
    for mappings in found.values():
        mappings.sort(key=lambda m: float(m.get("at", 0)))
    return found


def announced(project: str, commit: str, variant: str) -> dict[str, str]:
    """How a compile's announcement (``mapped``) names the mapping its task recorded to
    the compiled digest: its waiters of that commit know it without reading it back."""
    return {"project": project, "commit": commit, "variant": variant}


def key_matches(
    key: str, digest: str, options: CompileOptions, result: dict[str, Any] | None
) -> bool:
    """True when a stored ``result`` (written by a worker) proves ``key`` compiles ``digest``."""
    if result is None or result.get("key") != key or result.get("digest") != digest:
        return False
    version = str(result.get("engine_version", ""))
    return compile_key(digest, options, version) == key


def conflict_message(project: str, commit: str, first_digest: str, digest: str) -> str:
    """What a submitter is told when its commit was first mapped to other sources."""
    return (
        f"commit {commit[:12]} of project {project!r} was first submitted with other "
        f"sources (digest {first_digest[:12]}, this one {digest[:12]}); "
        "the first mapping stands, but the commit is now contested: status and fetch "
        "refuse it (exit 5) unless --digest picks one. "
        "This submit gets the CSS of its own sources."
    )
