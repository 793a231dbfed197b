"""The client's connections to its fleet's Redis, all of one kind: RESP2 on a socket.

Every command the client sends (the cache-hit lookup, the subscription a waiter
blocks on, the task it enqueues, ``status``/``fetch``/``health``'s reads) goes over
:class:`compiler_tasks.protocol.resp.RespConnection`: no redis-py, no Celery, so a
fresh ``scssq submit`` imports only the standard library and click
(``docs/architecture.md`` says why). A :class:`Link` is one lazily opened
connection to one URL (``SCSSQ_REDIS_URL``, or ``SCSSQ_BROKER_URL`` when the queue
lives on another Redis); a :class:`Subscription` is the connection a waiter
listens on.

Failures come in two kinds. :class:`Broken`: the connection failed (refused, reset,
timed out, cut short) or Redis refused for a passing reason (loading, busy, a
replica during a failover); the caller retries on a new connection until its
deadline (:func:`retrying`). A lasting refusal (a wrong password, an ACL) is a
RedisUnavailable at once: retrying would not help.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from compiler_tasks.errors import ConfigError, RedisUnavailable
from compiler_tasks.protocol import sentinel
from compiler_tasks.protocol.resp import Refused, RespConnection, RespError, parse_url
from compiler_tasks.settings import Settings, redact_url

T = TypeVar("T")
Warn = Callable[[str], None]

#: Refusals that pass (a server loading its data, busy, or no longer the master during
#: a failover): the connection is dropped and the command retried.
PASSING = frozenset({"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "READONLY", "CLUSTERDOWN"})
#: Seconds a submit keeps trying a Redis it never reached (a wrong URL fails fast).
CONNECT_GRACE = 10.0
#: First pause between two attempts after a broken connection, doubling up to 2 s.
RETRY_PAUSE = 0.2


class Broken(Exception):
    """Raised when a connection failed in a way a new connection may not (retry it)."""


def _open(settings: Settings, url: str, name: str | None) -> RespConnection:
    """A new connection to ``url`` (to the master Sentinel names, when configured)."""
    try:
        parse_url(url)
    except RespError as e:
        variable = "SCSSQ_REDIS_URL" if url == settings.redis_url else "SCSSQ_BROKER_URL"
        raise ConfigError(
            f"{variable} {redact_url(url)!r}: {e}; the client speaks redis://, rediss:// and "
            "unix:// URLs with an optional user:password@ and database (/N or ?db=N); "
            "set TLS files with SCSSQ_REDIS_CA_FILE/CERT_FILE/KEY_FILE"
        ) from e
    if url == settings.redis_url:  # through Sentinel when SCSSQ_SENTINELS is set
        return sentinel.connect(settings, settings.redis_reply_timeout, name)
    return RespConnection.open(settings, settings.redis_reply_timeout, name, url)


class Link:
    """One connection to ``url``, opened on first use and again after a failure."""

    def __init__(self, settings: Settings, url: str, name: str | None = None) -> None:
        self.settings = settings
        self.url = url
        self.name = name
        self.conn: RespConnection | None = None
        self.pid = 0
        #: Whether this link got a reply once (a later failure is a blip, not a bad URL).
        self.reached = False

    @property
    def shown(self) -> str:
        """Where this link goes, for messages (the Sentinels, or the URL redacted)."""
        if self.url == self.settings.redis_url:
            return self.settings.redis_shown
        return redact_url(self.url)

    def call(self, *commands: Sequence[str], check: bool = True) -> list[Any]:
        """The replies of ``commands``, sent in one write. An error reply raises (see the
        module doc) unless ``check`` is off: then it is returned in the list."""
        try:
            conn = self._connection()
            conn.send(*commands)
            replies = conn.receive(len(commands))
        except Refused as e:  # a setup command's (AUTH, SELECT): lasting, or passing
            self.close()
            raise self.refusal(e, "the connection setup (AUTH, CLIENT SETNAME, SELECT)") from e
        except (OSError, RespError) as e:
            self.close()
            raise Broken(f"{self.shown}: {e or type(e).__name__}") from e
        self.reached = True
        for command, reply in zip(commands, replies, strict=True):
            if check and isinstance(reply, Refused):
                raise self.refusal(reply, command[0])
        return replies

    def refusal(self, e: Refused, command: str) -> Exception:
        """What to raise for Redis refusing ``command``: Broken (retry on a new connection)
        when the refusal passes, else RedisUnavailable."""
        if e.code in PASSING:
            self.close()
            return Broken(f"{self.shown}: {e}")
        return RedisUnavailable(f"Redis at {self.shown} refused {command}: {e}")

    def _connection(self) -> RespConnection:
        conn = self.conn
        if conn is not None and (self.pid != os.getpid() or not conn.idle()):
            # A fork's copy, replies left unread (an interrupted call), or closed by the
            # server (its idle timeout): a new connection.
            self.close()
            conn = None
        if conn is None:
            conn = self.conn = _open(self.settings, self.url, self.name)
            self.pid = os.getpid()
        return conn

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and self.pid == os.getpid():
            try:
                conn.close()
            except OSError:
                pass


class Subscription:
    """A :class:`Link` subscribed to one channel; :meth:`next` reads its messages."""

    def __init__(self, settings: Settings, channel: str, name: str | None = None) -> None:
        self.channel = channel
        self.link = Link(settings, settings.redis_url, name)

    def open(self) -> None:
        """Subscribe on a new connection; returns once Redis confirmed it (SUBSCRIBE's
        reply), so later messages are buffered on the socket."""
        self.link.close()
        self.link.call(("SUBSCRIBE", self.channel))

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next message on the channel (a JSON object), or None after ``timeout``
        seconds without one; Broken when the connection failed."""
        conn = self.link.conn
        if conn is None:
            raise Broken("not subscribed")
        try:
            if not conn.readable(timeout):
                return None
            (reply,) = conn.receive(1)
        except (OSError, RespError) as e:
            self.link.close()
            raise Broken(f"subscription to {self.channel}: {e or type(e).__name__}") from e
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            data = json.loads(reply[2])
            return data if isinstance(data, dict) else None
        return None

    def close(self) -> None:
        self.link.close()


def retrying(
    attempt: Callable[[], T],
    link: Link,
    started: float,
    deadline: float,
    warn: Warn,
) -> T:
    """``attempt()``, tried again on a new connection after a :class:`Broken` one until
    ``deadline`` (pausing 0.2 s, doubling to 2 s); a Redis never reached at all gets
    only :data:`CONNECT_GRACE` seconds (a wrong URL should not hang a CI job)."""
    pause = RETRY_PAUSE
    while True:
        try:
            return attempt()
        except Broken as e:
            give_up = deadline if link.reached else min(deadline, started + CONNECT_GRACE)
            if time.monotonic() + pause >= give_up:
                raise RedisUnavailable(f"Redis at {link.shown} unreachable: {e}") from e
            if pause == RETRY_PAUSE:
                warn(f"Redis unreachable ({e}); retrying")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
