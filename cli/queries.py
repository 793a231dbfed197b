"""Read-only questions to the fleet: status of a commit, fetch its CSS, health.

Each function returns data for the CLI to print and raises the error whose
exit code the command documents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from compiler_tasks.coordination import commits
from compiler_tasks.coordination.fleet import alive_workers, store_mismatch, worker_stores
from compiler_tasks.errors import (
    CompileError,
    Contested,
    NotFound,
    RedisUnavailable,
    ScssqError,
    UsageError,
)
from compiler_tasks.keys import CompileOptions

from .client import Client
from .outputs import EntryOutput

_DIGEST_RE = re.compile(r"^[0-9a-f]{12,64}\Z")


@dataclass
class Variant:
    """One (entries + options) submitted for a commit, and where its result stands."""

    variant: str
    key: str
    digest: str
    options: dict[str, Any]
    state: str  # ok, error, compiling, missing
    message: str = ""
    #: The first of the later digests, when the commit is contested.
    conflict_digest: str | None = None
    #: Every later mapping with another digest (key, digest, state, message), oldest first.
    contenders: list[dict[str, Any]] = field(default_factory=list)

    @property
    def digests(self) -> list[str]:
        """The digest mapped first, then each contender's."""
        return [self.digest, *(str(c["digest"]) for c in self.contenders)]


def variants(client: Client, project: str, commit: str) -> list[Variant]:
    """Every mapping of (project, commit), with its state and any contenders."""
    try:
        mapping = client.redis.hgetall(client.keys.commit(project, commit))
        others = commits.contenders(client.redis.hgetall(client.keys.conflicts(project, commit)))
        found = []
        for name, raw in sorted(mapping.items()):
            data = json.loads(raw)
            state, message = _state(client, data["key"])
            contenders = [_contender(client, o) for o in others.get(name.decode(), [])]
            found.append(
                Variant(
                    variant=name.decode(),
                    key=data["key"],
                    digest=data["digest"],
                    options=data["options"],
                    state=state,
                    message=message,
                    conflict_digest=contenders[0]["digest"] if contenders else None,
                    contenders=contenders,
                )
            )
    except redis.RedisError as e:
        raise RedisUnavailable(f"Redis at {client.settings.redis_shown} is unreachable: {e}") from e
    if not found:
        raise NotFound(f"no submit of commit {commit} is known for project {project!r}")
    return found


def _contender(client: Client, mapping: dict[str, Any]) -> dict[str, Any]:
    state, message = _state(client, mapping["key"])
    return {"key": mapping["key"], "digest": mapping["digest"], "state": state, "message": message}


def _state(client: Client, key: str) -> tuple[str, str]:
    """Where the result of ``key`` stands: (ok|error|compiling|missing, error message)."""
    raw = client.redis.get(client.keys.result(key))
    if raw is not None:
        result = json.loads(raw)
        return ("ok" if result.get("status") == "ok" else "error"), str(result.get("message") or "")
    return ("compiling" if client.redis.exists(client.keys.lock(key)) else "missing"), ""


def choose(
    found: list[Variant], wanted: CompileOptions | None, digest: str | None = None
) -> Variant:
    """The variant matching ``wanted`` options (and ``--digest``), or the only one there is."""
    if digest is not None:
        found = with_digest(found, digest)
    if wanted is not None:
        for v in found:
            if v.variant == wanted.variant():
                return v
    if len(found) == 1:
        return found[0]
    listing = "; ".join(f"entries {v.options['entries']} style {v.options['style']}" for v in found)
    raise UsageError(
        f"the commit has {len(found)} variants ({listing}); pass --entry/--style to pick one"
    )


def with_digest(found: list[Variant], digest: str) -> list[Variant]:
    """The variants one of whose digests starts with ``digest`` (``--digest``); none: refused."""
    if not _DIGEST_RE.match(digest):
        raise UsageError(
            f"--digest {digest!r} is not 12-64 lowercase hexadecimal digits; pass a digest "
            "that `scssq submit --json` or `scssq status` printed"
        )
    having = [v for v in found if any(d.startswith(digest) for d in v.digests)]
    if not having:
        known = ", ".join(d for v in found for d in v.digests)
        raise UsageError(
            f"--digest {digest}: the commit was submitted with no such sources (its digests: "
            f"{known}); pass one of them"
        )
    return having


def pick(found: Variant, commit: str, project: str, digest: str | None) -> Variant:
    """The variant to serve: refused when contested, unless ``digest`` picks one of its digests.

    ``digest`` (``--digest``) is a digest, or a prefix of 12 or more hex digits of one.
    """
    if digest is None:
        if found.contenders:
            raise Contested(contested_message(found, commit, project))
        return found
    matches = [d for d in with_digest([found], digest)[0].digests if d.startswith(digest)]
    if len(matches) != 1:
        raise UsageError(
            f"--digest {digest} matches {len(matches)} of the digests commit {commit[:12]} of "
            f"project {project!r} was submitted with ({', '.join(found.digests)}); pass one of them"
        )
    if matches[0] == found.digest:
        return replace(found, conflict_digest=None, contenders=[])
    chosen = next(c for c in found.contenders if c["digest"] == matches[0])
    return replace(
        found,
        key=chosen["key"],
        digest=chosen["digest"],
        state=chosen["state"],
        message=chosen["message"],
        conflict_digest=None,
        contenders=[],
    )


def contested_message(found: Variant, commit: str, project: str) -> str:
    """Why ``status``/``fetch`` serve nothing: both (every) digest, and how to pick one."""
    later = ", ".join(str(c["digest"]) for c in found.contenders)
    return (
        f"commit {commit} of project {project!r} (entries {','.join(found.options['entries'])}) "
        f"is contested: it was submitted with digest {found.digest} first and later with other "
        f"sources, digest {later}; serving neither. Pass --digest with the digest of the "
        "sources you trust (the one your own `scssq submit` printed) to pick one"
    )


def fetch(client: Client, variant: Variant, out: Path) -> list[EntryOutput]:
    """Write the chosen variant's CSS under ``out``."""
    if variant.state == "error":
        raise CompileError(variant.message)
    if variant.state != "ok":
        raise NotFound(f"compile {variant.key[:12]} has no result ({variant.state})")
    raw = client.redis.get(client.keys.result(variant.key))
    if raw is None:
        raise NotFound(f"compile {variant.key[:12]} has no result (expired)")
    return client.download(json.loads(raw), out)


@dataclass
class Health:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def health(client: Client) -> Health:
    """Redis reachable and non-evicting, store reachable, at least one worker alive."""
    report = Health()
    settings = client.settings
    try:
        client.redis.ping()
        report.checks.append(("redis", True, f"reachable at {settings.redis_shown}"))
        _check_policy(client, report)
        workers = alive_workers(settings, client.redis)
        report.checks.append(
            (
                "workers",
                bool(workers),
                f"{len(workers)} alive: {', '.join(workers)}"
                if workers
                else "no worker heartbeat in the last "
                f"{settings.worker_alive_window:g} s; start the fleet",
            )
        )
        _check_store_match(client, report)
    except redis.RedisError as e:
        report.checks.append(("redis", False, f"unreachable at {settings.redis_shown}: {e}"))
    try:
        report.checks.append(("store", True, client.store.check()))
    except ScssqError as e:
        report.checks.append(("store", False, str(e)))
    return report


def _check_store_match(client: Client, report: Health) -> None:
    """The store the alive workers publish is the one this client reads (SCSSQ_STORE)."""
    try:
        stores = worker_stores(client.settings, client.redis)
    except redis.ResponseError as e:
        report.checks.append(("store match", True, f"cannot read the workers' store ({e})"))
        return
    problem = store_mismatch(client.settings, stores)
    if problem is not None:
        report.checks.append(("store match", False, problem))
    elif len(stores) > 1:
        report.checks.append(
            (
                "store match",
                False,
                f"the workers alive write to {len(stores)} stores ({', '.join(stores)}); "
                "give every worker the same SCSSQ_STORE",
            )
        )
    elif stores:
        report.checks.append(("store match", True, f"the workers write to {stores[0]} too"))


def _check_policy(client: Client, report: Health) -> None:
    try:
        policy = client.redis.config_get("maxmemory-policy").get("maxmemory-policy", "?")
    except redis.ResponseError as e:
        report.checks.append(("redis policy", True, f"cannot read maxmemory-policy ({e})"))
        return
    ok = policy == "noeviction"
    report.checks.append(
        (
            "redis policy",
            ok,
            f"maxmemory-policy {policy}"
            + (
                ""
                if ok
                else ": an evicting policy silently drops locks and queued "
                "tasks; set maxmemory-policy noeviction"
            ),
        )
    )
