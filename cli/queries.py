"""Read-only questions to the fleet: the variants of a commit and where each stands,
its stored CSS, and the fleet's health.

Each function returns data for the CLI to print and raises the error whose exit code
the command documents; which variant a command is about is :mod:`cli.selection`'s.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler_tasks.coordination import commits
from compiler_tasks.coordination.fleet import name_collisions, store_mismatch
from compiler_tasks.errors import CompileError, ConfigError, NotFound, RedisUnavailable, ScssqError
from compiler_tasks.protocol.resp import Refused

from .client import Client
from .outputs import EntryOutput
from .transport import Broken

#: A health check: (name, passed, detail).
Check = tuple[str, bool, str]


@dataclass
class Contender:
    """A mapping of the commit to a compile, and where its result stands."""

    key: str
    digest: str
    state: str  # ok, error, compiling, missing
    message: str = ""


@dataclass
class Variant:
    """One (entries + options) submitted for a commit, and where its result stands
    (``status --json`` prints each field)."""

    variant: str
    key: str
    digest: str
    options: dict[str, Any]
    state: str  # ok, error, compiling, missing
    message: str = ""
    #: The first of the later digests, when the commit is contested.
    conflict_digest: str | None = field(init=False)
    #: Every later mapping with another digest, oldest first.
    contenders: list[Contender] = field(default_factory=list)
    #: The variant the current scssq.toml and flags (or --variant) select.
    selected: bool = False

    def __post_init__(self) -> None:
        self.conflict_digest = self.contenders[0].digest if self.contenders else None

    @property
    def digests(self) -> list[str]:
        """The digest mapped first, then each contender's."""
        return [self.digest, *(c.digest for c in self.contenders)]


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
    mapping, conflicts = _call(
        client,
        ("HGETALL", client.keys.commit(project, commit)),
        ("HGETALL", client.keys.conflicts(project, commit)),
    )
    others = commits.contenders(_hash(conflicts))
    found = []
    for name, raw in sorted(_hash(mapping).items()):
        data, variant = json.loads(raw), name.decode()
        first = vars(_contender(client, data))
        later = [_contender(client, o) for o in others.get(variant, [])]
        found.append(Variant(variant, options=data["options"], contenders=later, **first))
    if not found:
        raise NotFound(f"no submit of commit {commit} is known for project {project!r}")
    return found


def _contender(client: Client, mapping: dict[str, Any]) -> Contender:
    """``mapping`` (its key and digest) and where the result of its key stands."""
    key = mapping["key"]
    raw, locked = _call(client, ("GET", client.keys.result(key)), ("EXISTS", client.keys.lock(key)))
    if raw is None:
        return Contender(key, mapping["digest"], "compiling" if locked else "missing")
    result = json.loads(raw)
    state = "ok" if result.get("status") == "ok" else "error"
    return Contender(key, mapping["digest"], state, str(result.get("message") or ""))


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


def health(client: Client) -> tuple[list[Check], list[str]]:
    """(checks, warnings): Redis reachable and non-evicting, at least one worker alive,
    writing to the store this client reads, and that store reachable."""
    window, keys, shown = client.settings.worker_alive_window, client.keys, client.redis.shown
    since = str(time.time() - window)
    alive = [
        ("ZRANGEBYSCORE", k, since, "+inf") for k in (keys.workers, keys.stores, keys.instances)
    ]
    checks: list[Check]
    warnings: list[str] = []
    try:
        _, policy, workers, stores, instances = client.redis.call(
            ("PING",), ("CONFIG", "GET", "maxmemory-policy"), *alive, check=False
        )
    except (Broken, RedisUnavailable) as e:
        checks = [("redis", False, f"unreachable at {shown}: {e}")]
    else:
        if isinstance(workers, Refused):
            raise client.redis.refusal(workers, "ZRANGEBYSCORE")
        names = ", ".join(w.decode() for w in workers)
        none = f"no worker heartbeat in the last {window:g} s; start the fleet"
        checks = [
            ("redis", True, f"reachable at {shown}"),
            _policy(policy),
            ("workers", bool(workers), f"{len(workers)} alive: {names}" if workers else none),
            *_store_match(client, stores),
        ]
        if not isinstance(instances, Refused):  # refused: an ACL from before instances
            warnings = name_collisions(instances)
    try:
        checks.append(("store", True, client.store.check()))
    except ConfigError:
        raise  # the store cannot even be opened here (a missing extra): exit 2
    except ScssqError as e:
        checks.append(("store", False, str(e)))
    return checks, warnings


def _store_match(client: Client, reply: Any) -> list[Check]:
    """The store the alive workers publish is the one this client reads (SCSSQ_STORE)."""
    if isinstance(reply, Refused):
        return [("store match", True, f"cannot read the workers' store ({reply})")]
    stores = sorted(s.decode() for s in reply)
    problem = store_mismatch(client.settings, stores)
    if problem is None and len(stores) > 1:
        problem = (
            f"the workers alive write to {len(stores)} stores ({', '.join(stores)}); "
            "give every worker the same SCSSQ_STORE"
        )
    if problem is not None:
        return [("store match", False, problem)]
    return [("store match", True, f"the workers write to {s} too") for s in stores]


def _policy(reply: Any) -> Check:
    if isinstance(reply, Refused):
        return ("redis policy", True, f"cannot read maxmemory-policy ({reply})")
    policy = _hash(reply).get(b"maxmemory-policy", b"?").decode()
    if policy == "noeviction":
        return ("redis policy", True, f"maxmemory-policy {policy}")
    return (
        "redis policy",
        False,
        f"maxmemory-policy {policy}: an evicting policy silently drops locks and queued "
        "tasks; set maxmemory-policy noeviction",
    )
