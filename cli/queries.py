"""Read-only questions to the fleet: status of a commit, fetch its CSS, health.

Each function returns data for the CLI to print and raises the error whose
exit code the command documents.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compiler_tasks.coordination import commits
from compiler_tasks.coordination.fleet import name_collisions, store_mismatch
from compiler_tasks.errors import (
    CompileError,
    ConfigError,
    Contested,
    NotFound,
    RedisUnavailable,
    ScssqError,
    UsageError,
)
from compiler_tasks.keys import CompileOptions
from compiler_tasks.protocol.resp import Refused

from .client import Client
from .outputs import EntryOutput
from .printing import describe, differing
from .transport import Broken

_DIGEST_RE = re.compile(r"^[0-9a-f]{12,64}\Z")
_VARIANT_RE = re.compile(r"^[0-9a-f]{4,16}\Z")


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
    #: The variant the current scssq.toml and flags (or --variant) select.
    selected: bool = False

    @property
    def digests(self) -> list[str]:
        """The digest mapped first, then each contender's."""
        return [self.digest, *(str(c["digest"]) for c in self.contenders)]


def _hash(reply: list[bytes]) -> dict[bytes, bytes]:
    """An ``HGETALL`` reply as a dict."""
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _call(client: Client, *commands: tuple[str, ...]) -> list[Any]:
    """The replies of ``commands``; a broken connection is a RedisUnavailable (queries
    are not retried: run them again)."""
    try:
        return client.redis.call(*commands)
    except Broken as e:
        raise RedisUnavailable(f"Redis at {client.redis.shown} is unreachable: {e}") from e


def variants(client: Client, project: str, commit: str) -> list[Variant]:
    """Every mapping of (project, commit), with its state and any contenders."""
    raw_mapping, raw_conflicts = _call(
        client,
        ("HGETALL", client.keys.commit(project, commit)),
        ("HGETALL", client.keys.conflicts(project, commit)),
    )
    mapping, others = _hash(raw_mapping), commits.contenders(_hash(raw_conflicts))
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
    if not found:
        raise NotFound(f"no submit of commit {commit} is known for project {project!r}")
    return found


def _contender(client: Client, mapping: dict[str, Any]) -> dict[str, Any]:
    state, message = _state(client, mapping["key"])
    return {"key": mapping["key"], "digest": mapping["digest"], "state": state, "message": message}


def _state(client: Client, key: str) -> tuple[str, str]:
    """Where the result of ``key`` stands: (ok|error|compiling|missing, error message)."""
    raw, locked = _call(client, ("GET", client.keys.result(key)), ("EXISTS", client.keys.lock(key)))
    if raw is not None:
        result = json.loads(raw)
        return ("ok" if result.get("status") == "ok" else "error"), str(result.get("message") or "")
    return ("compiling" if locked else "missing"), ""


def choose(
    found: list[Variant],
    wanted: CompileOptions | None,
    digest: str | None = None,
    variant: str | None = None,
) -> Variant:
    """The variant ``--variant`` names, else the one matching ``wanted`` options (and
    ``--digest``), else the only one there is."""
    if variant is not None:
        found = [by_variant(found, variant)]
    if digest is not None:
        found = with_digest(found, digest)
    if wanted is not None:
        for v in found:
            if v.variant == wanted.variant():
                return v
    if len(found) == 1:
        return found[0]
    names = differing(found)
    listing = "; ".join(f"{v.variant}: {describe(v, names)}" for v in found)
    raise UsageError(
        f"the commit has {len(found)} variants ({listing}); pass --variant ID to pick one "
        "(or the --entry/--style/... flags it was submitted with)"
    )


def by_variant(found: list[Variant], ident: str) -> Variant:
    """The variant whose ID (as ``status`` prints it) is, or starts with, ``ident``."""
    norm = ident.strip().lower()
    ids = ", ".join(v.variant for v in found)
    if not _VARIANT_RE.match(norm):
        raise UsageError(
            f"--variant {ident!r} is not 4-16 hexadecimal digits; pass a variant ID that "
            f"`scssq status` prints (this commit's: {ids})"
        )
    having = [v for v in found if v.variant.startswith(norm)]
    if len(having) != 1:
        problem = "names no variant" if not having else "names several variants"
        raise UsageError(f"--variant {ident} {problem} of the commit; pass one of {ids}")
    return having[0]


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


def fetch(
    client: Client, variant: Variant, out: Path, targets: dict[str, Path] | None = None
) -> list[EntryOutput]:
    """Write the chosen variant's CSS under ``out`` (an entry of ``targets`` to its file)."""
    if variant.state == "error":
        raise CompileError(variant.message)
    if variant.state != "ok":
        raise NotFound(f"compile {variant.key[:12]} has no result ({variant.state})")
    (raw,) = _call(client, ("GET", client.keys.result(variant.key)))
    if raw is None:
        raise NotFound(f"compile {variant.key[:12]} has no result (expired)")
    return client.download(json.loads(raw), out, targets)


@dataclass
class Health:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def health(client: Client) -> Health:
    """Redis reachable and non-evicting, store reachable, at least one worker alive."""
    report = Health()
    settings, keys, shown = client.settings, client.keys, client.redis.shown
    since = str(time.time() - settings.worker_alive_window)
    try:
        _, policy, workers, stores, instances = client.redis.call(
            ("PING",),
            ("CONFIG", "GET", "maxmemory-policy"),
            ("ZRANGEBYSCORE", keys.workers, since, "+inf"),
            ("ZRANGEBYSCORE", keys.stores, since, "+inf"),
            ("ZRANGEBYSCORE", keys.instances, since, "+inf"),
            check=False,
        )
    except (Broken, RedisUnavailable) as e:
        report.checks.append(("redis", False, f"unreachable at {shown}: {e}"))
    else:
        report.checks.append(("redis", True, f"reachable at {shown}"))
        report.checks.append(_policy(policy))
        if isinstance(workers, Refused):
            raise client.redis.refusal(workers, "ZRANGEBYSCORE")
        names = [w.decode() for w in workers]
        report.checks.append(
            (
                "workers",
                bool(names),
                f"{len(names)} alive: {', '.join(names)}"
                if names
                else f"no worker heartbeat in the last {settings.worker_alive_window:g} s; "
                "start the fleet",
            )
        )
        report.checks.extend(_store_match(client, stores))
        if not isinstance(instances, Refused):  # refused: an ACL from before instances
            report.warnings += name_collisions(instances)
    try:
        report.checks.append(("store", True, client.store.check()))
    except ConfigError:
        raise  # the store cannot even be opened here (a missing extra): exit 2
    except ScssqError as e:
        report.checks.append(("store", False, str(e)))
    return report


def _store_match(client: Client, reply: Any) -> list[tuple[str, bool, str]]:
    """The store the alive workers publish is the one this client reads (SCSSQ_STORE)."""
    if isinstance(reply, Refused):
        return [("store match", True, f"cannot read the workers' store ({reply})")]
    stores = sorted(s.decode() for s in reply)
    problem = store_mismatch(client.settings, stores)
    if problem is not None:
        return [("store match", False, problem)]
    if len(stores) > 1:
        return [
            (
                "store match",
                False,
                f"the workers alive write to {len(stores)} stores ({', '.join(stores)}); "
                "give every worker the same SCSSQ_STORE",
            )
        ]
    if stores:
        return [("store match", True, f"the workers write to {stores[0]} too")]
    return []


def _policy(reply: Any) -> tuple[str, bool, str]:
    if isinstance(reply, Refused):
        return ("redis policy", True, f"cannot read maxmemory-policy ({reply})")
    policy = _hash(reply).get(b"maxmemory-policy", b"?").decode()
    ok = policy == "noeviction"
    detail = f"maxmemory-policy {policy}"
    if not ok:
        detail += (
            ": an evicting policy silently drops locks and queued tasks; "
            "set maxmemory-policy noeviction"
        )
    return ("redis policy", ok, detail)
