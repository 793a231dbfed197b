"""``scssq submit`` as one process: a plain cache hit first, else the full client.

Most CI submits are repeats, so the hit is what a fleet's users pay most often;
``bench/hit.py`` holds it to half of compiling locally. A fresh process cannot
afford redis-py (about 100 ms to import, with asyncio), so :func:`cached` reads
with :mod:`compiler_tasks.resp` in two pipelined round trips:

1. ``HGET <prefix>:engines <engine>`` (plus AUTH/SELECT in the same write);
2. ``GET <prefix>:result:<key>`` and the commit mapping's ``HGET``.

It answers only a *plain* hit (:func:`plain_hit`): a stored result whose commit
is already mapped to this bundle's digest. Anything else (no result, an unmapped
or conflicting commit, an artifact gone from the store, a Redis error, a URL
option it does not know) returns None and :func:`submit` goes the full way
(:mod:`cli.client`, which makes the same one-round-trip check with redis-py,
then subscribes, reads again, asks a worker to map the commit, retries and
reports). Reading before subscribing is safe because a miss is read again after
the subscription.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from compiler_tasks import stats
from compiler_tasks.bundle import Bundle, collect
from compiler_tasks.errors import ArtifactMissing, CompileError, InvalidInput
from compiler_tasks.keys import RedisKeys, compile_key
from compiler_tasks.resp import RespConnection, RespError
from compiler_tasks.settings import Settings

from .config import SubmitConfig
from .outputs import Artifacts, SubmitResult

Progress = Callable[[str], None]
#: Seconds the fast path waits for a connection before leaving it to the full client.
CONNECT_TIMEOUT = 5.0


def collect_bundle(config: SubmitConfig, settings: Settings) -> Bundle:
    """The submit's bundle, bounded by the settings; every entry must be in it."""
    bundle = collect(
        config.src,
        exclude=[config.out],
        max_bytes=settings.max_bundle_bytes,
        max_files=settings.max_bundle_files,
    )
    for entry in config.options.entries:
        if entry not in bundle.files:
            raise InvalidInput(f"entry {entry!r} is not a stylesheet under {config.src}")
    return bundle


def submit(
    settings: Settings,
    config: SubmitConfig,
    commit: str,
    *,
    timeout: float,
    wait: bool = True,
    progress: Progress | None = None,
    warn: Progress | None = None,
) -> SubmitResult:
    """Submit ``config``'s bundle for ``commit``: a plain hit here, else :mod:`cli.client`."""
    started = time.monotonic()
    bundle = collect_bundle(config, settings)
    if wait:
        hit = cached(settings, config, bundle, commit, started, started + timeout)
        if hit is not None:
            return hit
    from .client import Client
    from .client import submit as full_submit

    client = Client(settings)
    try:
        return full_submit(
            client,
            config,
            commit,
            timeout=timeout,
            wait=wait,
            progress=progress,
            warn=warn,
            bundle=bundle,
            started=started,
        )
    finally:
        client.close()


def cached(
    settings: Settings,
    config: SubmitConfig,
    bundle: Bundle,
    commit: str,
    started: float,
    deadline: float,
) -> SubmitResult | None:
    """The submit's result if it is a plain cache hit, else None (see the module doc).

    A stored compile error is a hit too: CompileError, with the stored warnings.
    """
    keys = RedisKeys(settings.prefix)
    options = config.options
    timeout = max(0.1, min(CONNECT_TIMEOUT, deadline - time.monotonic()))
    try:
        with RespConnection.open(settings, timeout) as conn:
            (version,) = conn.call(("HGET", keys.engines, options.engine))
            if not isinstance(version, bytes):
                return None  # no worker registered: the full client says so
            key = compile_key(bundle.digest, options, version.decode())
            raw, mapping = conn.call(
                ("GET", keys.result(key)),
                ("HGET", keys.commit(config.project, commit), options.variant()),
            )
            result = plain_hit(raw, mapping, bundle.digest)
            if result is None:
                return None
            res = SubmitResult(config.project, commit, key, bundle.digest, "cached")
            res.warnings = str(result.get("warnings") or "")
            if result["status"] == "ok":
                res.entries = Artifacts(settings).download(result, config.out)
            _count_hit(conn, keys.prefix)
    except (OSError, RespError, ValueError, ArtifactMissing):
        return None
    if result["status"] == "error":
        err = CompileError(str(result.get("message")))
        err.warnings = res.warnings  # type: ignore[attr-defined]
        raise err
    res.seconds = time.monotonic() - started
    return res


def plain_hit(raw: Any, mapping: Any, digest: str) -> dict[str, Any] | None:
    """The stored result when it exists and the commit is mapped to ``digest``."""
    if not isinstance(raw, bytes) or not isinstance(mapping, bytes):
        return None
    if json.loads(mapping).get("digest") != digest:
        return None  # a conflict: the full client warns and records it
    result = json.loads(raw)
    if not isinstance(result, dict) or result.get("status") not in ("ok", "error"):
        return None
    return result


def _count_hit(conn: RespConnection, prefix: str) -> None:
    """``INCR`` the fleet's hit counter; best effort, like :func:`stats.count_submit`."""
    try:
        conn.call(("INCR", stats.key(prefix, stats.COUNTERS["cached"])))
    except (OSError, RespError):
        pass
