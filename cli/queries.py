"""Read-only questions to the fleet: status of a commit, fetch its CSS, health.

Each function returns data for the CLI to print and raises the error whose
exit code the command documents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from compiler_tasks.coordination.fleet import alive_workers
from compiler_tasks.errors import (
    CompileError,
    NotFound,
    RedisUnavailable,
    ScssqError,
    UsageError,
)
from compiler_tasks.keys import CompileOptions
from compiler_tasks.settings import redact_url

from .client import Client
from .outputs import EntryOutput


@dataclass
class Variant:
    """One (entries + options) submitted for a commit, and where its result stands."""

    variant: str
    key: str
    digest: str
    options: dict[str, Any]
    state: str  # ok, error, compiling, missing
    message: str = ""
    conflict_digest: str | None = None


def variants(client: Client, project: str, commit: str) -> list[Variant]:
    """Every mapping of (project, commit), with its state and any conflict."""
    try:
        mapping = client.redis.hgetall(client.keys.commit(project, commit))
        conflicts = client.redis.hgetall(client.keys.conflicts(project, commit))
        found = []
        for name, raw in sorted(mapping.items()):
            data = json.loads(raw)
            key = data["key"]
            result_raw = client.redis.get(client.keys.result(key))
            state, message = "missing", ""
            if result_raw is not None:
                result = json.loads(result_raw)
                state = "ok" if result.get("status") == "ok" else "error"
                message = str(result.get("message") or "")
            elif client.redis.exists(client.keys.lock(key)):
                state = "compiling"
            other = conflicts.get(name)
            found.append(
                Variant(
                    variant=name.decode(),
                    key=key,
                    digest=data["digest"],
                    options=data["options"],
                    state=state,
                    message=message,
                    conflict_digest=json.loads(other)["digest"] if other else None,
                )
            )
    except redis.RedisError as e:
        raise RedisUnavailable(
            f"Redis at {redact_url(client.settings.redis_url)} is unreachable: {e}"
        ) from e
    if not found:
        raise NotFound(f"no submit of commit {commit} is known for project {project!r}")
    return found


def choose(found: list[Variant], wanted: CompileOptions | None) -> Variant:
    """The variant matching ``wanted`` options, or the only one there is."""
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
        report.checks.append(("redis", True, f"reachable at {redact_url(settings.redis_url)}"))
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
    except redis.RedisError as e:
        report.checks.append(
            ("redis", False, f"unreachable at {redact_url(settings.redis_url)}: {e}")
        )
    try:
        report.checks.append(("store", True, client.store.check()))
    except ScssqError as e:
        report.checks.append(("store", False, str(e)))
    return report


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
