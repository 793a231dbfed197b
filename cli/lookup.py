"""A client's cache-hit lookup: engine version, stored result and commit mapping at once.

One pipeline answers a plain hit: ``HGET`` of the engine version the fleet published,
``GET`` of the result under the key computed from the version this client saw last
(checked against the first reply), ``HGET`` of the commit mapping. A warm client
(:class:`cli.client.Client` held by a long-lived process) sends it *ahead*: before it
checks its sources, for the digest its previous submit of the same folder had, so
the round trip runs while the sources are ``stat``'ed. The replies count only if the
bundle's digest turns out to be that one; otherwise they are read and dropped and the
lookup is sent again. The submit counters of earlier submits (:mod:`compiler_tasks.stats`)
ride in front of the same pipeline.

Replies are read on the connection the commands went out on (taken from the client's
pool for that time); a connection that fails or is left with replies unread is closed
before it goes back to the pool, so no later command reads a stale reply.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import redis

from compiler_tasks import stats
from compiler_tasks.errors import NoWorkers
from compiler_tasks.keys import CompileOptions, RedisKeys, compile_key
from compiler_tasks.settings import Settings, redact_url

from .config import SubmitConfig

#: Folders (digests, keys, option sets) a client remembers (then it starts over).
MAX_FOLDERS = 64


@dataclass(frozen=True)
class Found:
    """What a lookup read: the engine version, the key, the stored result and mapping."""

    version: str
    key: str
    result: bytes | None
    mapping: bytes | None


class Pending:
    """A lookup pipeline sent for ``digest``; :meth:`read` gets its replies (once)."""

    def __init__(
        self,
        lookups: Lookups,
        conn: Any,
        digest: str,
        engine: str,
        guess: str | None,
        key: str | None,
        counted: int,
    ) -> None:
        self.lookups = lookups
        self.conn: Any = conn
        self.digest = digest
        self.engine = engine
        #: The engine version the key was computed with (the one seen last), if any.
        self.guess = guess
        #: The compile key under that version, whose result was asked for.
        self.key = key
        #: Submit counts sent in front of the lookup.
        self.counted = counted
        #: The commit mapping's reply, once read (it does not depend on the version).
        self.mapping: bytes | None = None

    def read(self) -> Found | None:
        """The replies; None when the fleet's engine version was not the guessed one."""
        replies = stats.counted(self._replies(), self.counted)
        version = self.lookups.published(self.engine, replies[0])
        self.mapping = replies[-1]
        if version != self.guess or self.key is None:
            return None
        return Found(version, self.key, replies[1], self.mapping)

    def found_for(self, digest: str) -> Found | None:
        """The replies if they are for ``digest`` (else they are dropped) and arrived;
        None when the caller has to look up again."""
        if digest != self.digest:
            self.drop()
            return None
        try:
            return self.read()
        except (redis.ConnectionError, redis.TimeoutError):
            return None  # the submit's own lookup reconnects, or reports the outage

    def drop(self) -> None:
        """Read and forget the replies (the submit's digest was another one)."""
        try:
            self._replies()
        except redis.RedisError:
            pass  # the connection was closed: nothing is left unread

    def _replies(self) -> list[Any]:
        conn, self.conn = self.conn, None
        if conn is None:
            raise RuntimeError("a pending lookup's replies are read once")
        pool = self.lookups.redis.connection_pool
        sent = self.counted + (3 if self.key is not None else 2)
        try:
            replies: list[Any] = []
            for _ in range(sent):
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as e:
                    replies.append(e)
        except BaseException:
            conn.disconnect()  # replies may be left unread: no one else reads them
            raise
        finally:
            pool.release(conn)
        return replies


class Lookups:
    """The lookup state of one client: versions seen, counts to send, digests sent ahead."""

    def __init__(self, settings: Settings, client: redis.Redis, keys: RedisKeys) -> None:
        self.settings = settings
        self.redis = client
        self.keys = keys
        #: Whether Redis answered once (later failures are blips).
        self.reached = False
        #: Engine -> the version the fleet published when this client last looked.
        self.versions: dict[str, str] = {}
        #: Counter names of delivered submits not yet sent (compiler_tasks.stats).
        self.uncounted: list[str] = []
        #: (src, out) -> the digest of the last bundle collected there.
        self.digests: dict[tuple[str, str], str] = {}
        self._keys: dict[tuple[str, CompileOptions, str], str] = {}
        self._variants: dict[CompileOptions, str] = {}
        self.flush = weakref.finalize(self, stats.count, client, keys.prefix, self.uncounted)

    def published(self, engine: str, raw: bytes | None) -> str:
        """The engine version in a reply (``HGET`` of the engines); NoWorkers if none."""
        self.reached = True
        if raw is None:
            raise NoWorkers(
                f"no worker of prefix {self.settings.prefix!r} has registered engine {engine!r} "
                f"at {redact_url(self.settings.redis_url)}; start the fleet "
                "(celery -A compiler_tasks.app worker) and retry"
            )
        version = raw.decode()
        self.versions[engine] = version
        return version

    def count(self, outcome: str) -> None:
        """Count a delivered submit's outcome with the next lookup (or the flush)."""
        name = stats.COUNTERS.get(outcome)
        if name is not None:
            self.uncounted.append(name)

    def key(self, digest: str, options: CompileOptions, version: str) -> str:
        """:func:`compile_key`, remembered: a warm client asks for the same one again."""
        memo = (digest, options, version)
        key = self._keys.get(memo)
        if key is None:
            if len(self._keys) >= MAX_FOLDERS:
                self._keys.clear()
            key = self._keys[memo] = compile_key(digest, options, version)
        return key

    def _variant(self, options: CompileOptions) -> str:
        variant = self._variants.get(options)
        if variant is None:
            if len(self._variants) >= MAX_FOLDERS:
                self._variants.clear()
            variant = self._variants[options] = options.variant()
        return variant

    def ahead(self, config: SubmitConfig, commit: str) -> Pending | None:
        """The lookup for the digest ``config``'s folder had last time, sent now; None
        when there was none or Redis cannot take it (the submit's own lookup will say)."""
        digest = self.digests.get((str(config.src), str(config.out)))
        if digest is None:
            return None
        try:
            return self.send(digest, config.options, config.project, commit)
        except redis.RedisError:
            return None

    def remember(self, config: SubmitConfig, digest: str) -> None:
        """The digest of the bundle just collected from ``config``'s folder."""
        if len(self.digests) >= MAX_FOLDERS:
            self.digests.clear()
        self.digests[(str(config.src), str(config.out))] = digest

    def send(self, digest: str, options: CompileOptions, project: str, commit: str) -> Pending:
        """Send the lookup of (digest, options) and commit now; read it with the result."""
        guess = self.versions.get(options.engine)
        mapping = (self.keys.commit(project, commit), self._variant(options))
        commands: list[tuple[str, ...]] = [
            ("INCR", stats.key(self.keys.prefix, name)) for name in self.uncounted
        ]
        counted = len(commands)
        commands.append(("HGET", self.keys.engines, options.engine))
        key = None if guess is None else self.key(digest, options, guess)
        if key is not None:
            commands.append(("GET", self.keys.result(key)))
        commands.append(("HGET", *mapping))
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        del self.uncounted[:counted]
        return Pending(self, conn, digest, options.engine, guess, key, counted)

    def lookup(self, digest: str, options: CompileOptions, project: str, commit: str) -> Found:
        """One round trip when the engine version is the one seen last, else two.

        A connection that broke since its last use (Redis restarted) is replaced once.
        """
        try:
            pending = self.send(digest, options, project, commit)
            found = pending.read()
        except (redis.ConnectionError, redis.TimeoutError):
            pending = self.send(digest, options, project, commit)
            found = pending.read()
        if found is not None:
            return found
        version = self.versions[options.engine]
        key = self.key(digest, options, version)
        return Found(version, key, self.redis.get(self.keys.result(key)), pending.mapping)
