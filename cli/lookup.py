"""A client's cache-hit lookup: engine version, stored result and commit mapping at once.

One pipeline answers a plain hit: ``HGET`` of the engine version the fleet published,
``GET`` of the result under the key computed from the version this client saw last
(checked against the first reply), ``HGET`` of the commit mapping. A warm client
(:class:`cli.client.Client` held by a long-lived process) sends it *ahead*: before it
checks its sources, for the digest its previous submit of the same folder had, so the
round trip runs while the sources are ``stat``'ed. The replies count only if the
bundle's digest turns out to be that one; otherwise they are dropped and the lookup is
sent again.

Submit counts (:mod:`compiler_tasks.observability.stats`) are not sent on their own: they ride in
front of the client's next lookup, or go when it is closed, garbage-collected or the
process exits (waiting at most :data:`REPLY_WAIT` for Redis, and only from the process
that made them, not a fork). Counts of a process killed by a signal are lost: counting
is best effort.

Replies are read on the connection the commands went out on (taken from the client's
pool for that time). A connection is released to the pool only with every reply read;
one that failed, or whose replies are not wanted (the submit stopped on a bad bundle, or
was interrupted), is disconnected first, so no later command reads a stale reply. A
:class:`Lookups` belongs to one thread at a time, as its :class:`cli.client.Client`.

The lookup sent ahead, a warm client's every plain hit, goes over a connection of its
own that speaks RESP2 with :mod:`compiler_tasks.protocol.resp` (:class:`_Private`, named like the
client's others), not through redis-py's pool and parser: about 50 µs less of a
0.5-0.6 ms hit. Any failure there sends that submit's lookup the redis-py way, which reports as
usual; a broken connection is opened again next time, as is one with replies left
unread (an interrupted lookup) or one the server closed, while an error reply that would
last (an ACL, a password) or a URL that module does not speak turns it off for the
client's life.
"""

from __future__ import annotations

import functools
import os
import weakref
from dataclasses import dataclass, field
from typing import Any

import redis

from compiler_tasks.errors import NoWorkers
from compiler_tasks.keys import CompileOptions, RedisKeys, compile_key
from compiler_tasks.observability import stats
from compiler_tasks.protocol import resp, sentinel
from compiler_tasks.settings import Settings

from .config import SubmitConfig

#: Folders a client remembers the last digest of (then it starts over).
MAX_FOLDERS = 64
#: Compile keys and option variants remembered (least recently used dropped).
MAX_KEYS = 256

#: compile_key and CompileOptions.variant, remembered: a warm client asks for the same ones
#: on every submit of an unchanged folder.
_key = functools.lru_cache(maxsize=MAX_KEYS)(compile_key)
_variant = functools.lru_cache(maxsize=MAX_KEYS)(CompileOptions.variant)
#: Seconds dropped replies and the counts sent at close or exit are waited for.
REPLY_WAIT = 1.0
#: Seconds the private lookup connection waits to connect, or for a reply, before the
#: lookup goes the redis-py way.
PRIVATE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Found:
    """What a lookup read: the engine version, the key, the stored result and mapping."""

    version: str
    key: str
    result: bytes | None
    mapping: bytes | None


@dataclass
class _Counts:
    """Counter names of delivered submits not yet sent, shared with the exit flush."""

    names: list[str] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    #: Whether the last lookup reached Redis (an exit flush is only tried then).
    healthy: bool = False


class _Private:
    """The :mod:`compiler_tasks.protocol.resp` connection that lookups sent ahead go over."""

    def __init__(self, settings: Settings, name: str | None) -> None:
        self.settings = settings
        self.name = name
        self.conn: resp.RespConnection | None = None
        self.pid = 0
        #: Turned off for good (an error reply, an unsupported URL): redis-py only.
        self.off = False

    def get(self) -> resp.RespConnection | None:
        """The open connection (opened now if needed), or None when turned off."""
        if self.off:
            return None
        if self.conn is not None and self.pid != os.getpid():
            self.conn = None  # a fork's copy: the parent's connection, left alone
        if self.conn is not None and not self.conn.idle():
            # Replies left unread (a lookup abandoned by an interrupt) would answer the
            # next one; a connection the server closed (its idle timeout) would lose the
            # counts sent on it: either way, a new connection.
            self.reset()
        if self.conn is None:
            try:
                self.conn = sentinel.connect(self.settings, PRIVATE_TIMEOUT, self.name)
            except resp.RespError:
                self.off = True  # a URL this module does not speak
                return None
            except OSError:
                return None  # unreachable now: redis-py's lookup says how
            self.pid = os.getpid()
        return self.conn

    def reset(self, off: bool = False) -> None:
        """Close the connection (its unread replies go with it); ``off``: for good."""
        conn, self.conn = self.conn, None
        self.off = self.off or off
        if conn is not None and self.pid == os.getpid():
            try:
                conn.close()
            except OSError:
                pass


class Pending:
    """A lookup pipeline sent for ``digest``; its replies are read once."""

    def __init__(
        self,
        lookups: Lookups,
        digest: str,
        options: CompileOptions,
        guess: str | None,
        counted: int,
    ) -> None:
        self.lookups = lookups
        self.conn: Any = None
        #: The private connection the lookup went out on instead (then ``conn`` is None).
        self.private: resp.RespConnection | None = None
        self.digest = digest
        self.options = options
        #: The engine version the key was computed with (the one seen last), if any.
        self.guess = guess
        #: The compile key under that version, whose result was asked for.
        self.key = None if guess is None else _key(digest, options, guess)
        #: Submit counts sent in front of the lookup.
        self.counted = counted

    def read(self) -> Found:
        """The replies; one more ``GET`` when the fleet's engine version changed."""
        replies = _after_counts(self._read(None), self.counted)
        lookups = self.lookups
        version = lookups.published(self.options.engine, replies[0])
        mapping = replies[-1]
        if version == self.guess and self.key is not None:
            return Found(version, self.key, replies[1], mapping)
        key = _key(self.digest, self.options, version)
        return Found(version, key, lookups.redis.get(lookups.keys.result(key)), mapping)

    def found_for(self, digest: str) -> Found | None:
        """The replies if they are for ``digest`` (else they are dropped) and arrived;
        None when the caller has to look up again."""
        if digest != self.digest:
            self.drop()
            return None
        try:
            return self.read()
        except (redis.ConnectionError, redis.TimeoutError):
            self.lookups.counts.healthy = False
            return None  # the submit's own lookup reconnects, or reports the outage

    def drop(self) -> None:
        """Read and forget the replies (waiting at most :data:`REPLY_WAIT`)."""
        if self.conn is not None or self.private is not None:
            try:
                self._read(REPLY_WAIT)
            except redis.RedisError:
                pass  # the connection was closed: nothing is left unread

    def close(self) -> None:
        """Forget the replies without waiting for them (the connection is closed)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.disconnect()
            self.lookups.pool.release(conn)
        if self.private is not None:
            self.private = None
            self.lookups.private.reset()

    @property
    def _count(self) -> int:
        """Replies this lookup waits for: the counts, the engine version, the result (when
        a key was guessed) and the commit mapping."""
        return self.counted + (2 if self.key is None else 3)

    def _read(self, wait: float | None) -> list[Any]:
        if self.private is not None:
            return self._read_private(wait)
        conn, self.conn = self.conn, None
        if conn is None:
            raise RuntimeError("a pending lookup's replies are read once")
        return _read(self.lookups.pool, conn, self._count, wait)

    def _read_private(self, wait: float | None) -> list[Any]:
        """The replies from the private connection (within ``wait`` seconds, if given);
        on any failure, a ConnectionError (the submit then looks up the redis-py way,
        which reports as usual)."""
        conn, self.private = self.private, None
        assert conn is not None
        try:
            if wait is not None:
                conn.sock.settimeout(wait)
            replies = conn.receive(self._count)
            if wait is not None:
                conn.sock.settimeout(PRIVATE_TIMEOUT)
        except BaseException as e:  # replies may be left unread (an interrupt too): closed
            self.lookups.private.reset(off=_lasting(e))
            if isinstance(e, resp.RespError | OSError):
                raise redis.ConnectionError(f"lookup connection failed: {e}") from e
            raise
        # A refused count is ignored (as _after_counts does); any other refusal closes the
        # connection (for good when it would last), and redis-py's lookup meets it again
        # and reports it.
        refusals = [r for r in replies[self.counted :] if isinstance(r, resp.RespError)]
        if refusals:
            self.lookups.private.reset(off=any(map(_lasting, refusals)))
            raise redis.ConnectionError(f"lookup refused on its own connection: {refusals[0]}")
        return replies


#: Error replies that pass (a server loading its data, busy, failing over): the private
#: connection is only closed; any other refusal (a password, an ACL) turns it off.
PASSING_REFUSALS = ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY")


def _lasting(error: BaseException) -> bool:
    """Whether ``error`` is a refusal by Redis that the next try would meet again."""
    if not isinstance(error, resp.RespError) or not str(error).startswith(resp.REFUSED):
        return False  # a break (closed, malformed, timed out): worth a new connection
    code = str(error).removeprefix(resp.REFUSED).split(" ", 1)[0]
    return code not in PASSING_REFUSALS


def _read(pool: Any, conn: Any, count: int, wait: float | None) -> list[Any]:
    """``count`` replies on ``conn`` (error replies as exceptions in the list), then the
    connection goes back to ``pool``; with ``wait``, a reply not there within ``wait``
    seconds closes the connection instead (as any failure does)."""
    try:
        replies: list[Any] = []
        for _ in range(count):
            if wait is not None and not conn.can_read(timeout=wait):
                raise redis.TimeoutError(f"no reply from Redis within {wait:g} s")
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


def _send(pool: Any, commands: list[tuple[str, ...]]) -> Any:
    """A connection of ``pool`` that ``commands`` went out on; its replies are unread."""
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join(map(resp.encode, commands))])
    except BaseException:
        conn.disconnect()
        pool.release(conn)
        raise
    return conn


def _after_counts(replies: list[Any], counted: int) -> list[Any]:
    """The replies after the first ``counted`` (INCRs): a refused count is ignored (best
    effort), any other error reply is raised as a pipeline would raise it."""
    rest = replies[counted:]
    for reply in rest:
        if isinstance(reply, Exception):
            raise reply
    return rest


def _flush(pool: Any, prefix: str, counts: _Counts) -> None:
    """Send the counts not sent yet (close, garbage collection, exit); never raises."""
    names, counts.names[:] = list(counts.names), []
    if not names or counts.pid != os.getpid() or not counts.healthy:
        return
    try:
        conn = _send(pool, [("INCR", stats.key(prefix, name)) for name in names])
        _read(pool, conn, len(names), REPLY_WAIT)
    except (redis.RedisError, OSError):
        pass  # best effort: the counts are lost


#: Why nothing can be enqueued on a Redis where no worker ever ran (a worker publishes
#: its engine versions on start and they stay after it stops), and the fix.
NEVER_REGISTERED = (
    "no worker of prefix {0!r} has ever registered engine {1!r} at {2}, so no compile key "
    "can be computed and nothing is enqueued (a new Redis, or one that lost its data; a "
    "fleet scaled to zero cannot be woken before a worker has run once): start the fleet, "
    "one worker once is enough (celery -A compiler_tasks.app worker, or kubectl -n scssq "
    "scale deployment/scssq-worker --replicas=1), and retry"
)


class Lookups:
    """The lookup state of one client: versions seen, counts to send, digests sent ahead."""

    def __init__(self, settings: Settings, client: redis.Redis, keys: RedisKeys) -> None:
        self.settings = settings
        self.redis = client
        #: redis-py's pool (typed Any: the types-redis stubs predate redis-py 5.3's API).
        self.pool: Any = client.connection_pool
        self.keys = keys
        #: Whether Redis answered once (later failures are blips).
        self.reached = False
        #: Engine -> the version the fleet published when this client last looked.
        self.versions: dict[str, str] = {}
        self.counts = _Counts()
        #: (src, out) -> the digest of the last bundle collected there.
        self.digests: dict[tuple[str, str], str] = {}
        self.flush = weakref.finalize(self, _flush, self.pool, keys.prefix, self.counts)
        self.private = _Private(settings, self.pool.connection_kwargs.get("client_name"))

    def published(self, engine: str, raw: bytes | None) -> str:
        """The engine version in a reply (``HGET`` of the engines); NoWorkers if none."""
        self.reached = self.counts.healthy = True
        if raw is None:
            url = self.settings.redis_shown
            raise NoWorkers(NEVER_REGISTERED.format(self.settings.prefix, engine, url))
        version = raw.decode()
        self.versions[engine] = version
        return version

    def count(self, outcome: str) -> None:
        """Count a delivered submit's outcome with the next lookup (or the flush)."""
        name = stats.COUNTERS.get(outcome)
        if name is not None:
            self.counts.names.append(name)

    def ahead(self, config: SubmitConfig, commit: str) -> Pending | None:
        """The lookup for the digest ``config``'s folder had last time, sent now; None
        when there was none, or Redis failed last time (the submit's own lookup says)."""
        digest = self.digests.get((str(config.src), str(config.out)))
        if digest is None or not self.counts.healthy:
            return None
        try:
            return self.send(digest, config.options, config.project, commit, private=True)
        except (redis.RedisError, OSError):
            self.counts.healthy = False
            return None

    def remember(self, config: SubmitConfig, digest: str) -> None:
        """The digest of the bundle just collected from ``config``'s folder."""
        if len(self.digests) >= MAX_FOLDERS:
            self.digests.clear()
        self.digests[(str(config.src), str(config.out))] = digest

    def send(
        self,
        digest: str,
        options: CompileOptions,
        project: str,
        commit: str,
        private: bool = False,
    ) -> Pending:
        """Send the lookup of (digest, options) and commit now; read it with the result.
        ``private``: over the lookups' own connection when it works (see the module doc)."""
        names = self.counts.names
        pending = Pending(self, digest, options, self.versions.get(options.engine), len(names))
        commands: list[tuple[str, ...]] = [
            ("INCR", stats.key(self.keys.prefix, name)) for name in names
        ]
        commands.append(("HGET", self.keys.engines, options.engine))
        if pending.key is not None:
            commands.append(("GET", self.keys.result(pending.key)))
        commands.append(("HGET", self.keys.commit(project, commit), _variant(options)))
        conn = self.private.get() if private else None
        if conn is not None:
            try:
                conn.send(*commands)
                pending.private = conn
            except BaseException as e:  # a part may have gone out: it is closed
                self.private.reset()
                if not isinstance(e, OSError):
                    raise
        if pending.private is None:
            pending.conn = _send(self.pool, commands)
        del names[: pending.counted]
        return pending

    def lookup(self, digest: str, options: CompileOptions, project: str, commit: str) -> Found:
        """One round trip when the engine version is the one seen last, else two.

        A connection that broke since its last use (Redis restarted) is replaced once.
        """
        try:
            return self.send(digest, options, project, commit).read()
        except (redis.ConnectionError, redis.TimeoutError):
            self.counts.healthy = False
            return self.send(digest, options, project, commit).read()
