"""RESP2 over one socket with the standard library: the client's only Redis protocol.

``scssq submit`` is a short process; importing redis-py (it imports asyncio) and
Celery cost a CI job more than its whole cache hit when the client still did
(``bench/peers.py`` measures what a job pays now), and the client needs a dozen plain
commands and one subscription. So the client
(:mod:`cli.transport`) speaks RESP2 itself: commands pipelined in one write, their
replies read in order, and pub/sub messages read as they come. A reply this module
does not understand, a short read or a closed socket raises :class:`RespError` (or
``OSError``); an error reply is a :class:`Refused`, raised by :meth:`RespConnection.call`.

Supported URLs are the ones scssq documents: ``redis://``, ``rediss://`` (verified
TLS with ``SCSSQ_REDIS_CA_FILE``/``CERT_FILE``/``KEY_FILE``, as
:mod:`compiler_tasks.coordination.connections`) and ``unix://``, with an optional
``user:password@`` and database number (path or ``?db=``).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..settings import Settings

#: Default Redis port.
DEFAULT_PORT = 6379
#: Largest bulk reply read (a result is a few KB; anything bigger is not ours).
MAX_BULK = 64 * 1024 * 1024

Reply = bytes | int | str | list[Any] | None
#: How the message of an error reply starts.
REFUSED = "Redis replied: "


class RespError(Exception):
    """Raised when a reply is malformed or cut short, or the URL uses an option this
    client does not support."""


class Refused(RespError):
    """Raised when Redis answers a command with an error reply (``code`` is its first word)."""

    @property
    def code(self) -> str:
        return str(self).removeprefix(REFUSED).split(" ", 1)[0]


@dataclass(frozen=True)
class Target:
    """Where and how to connect, parsed from a Redis URL."""

    tls: bool
    host: str
    port: int
    unix_path: str
    username: str | None
    password: str | None
    db: int


def parse_url(url: str) -> Target:
    """The connection target of ``url``; RespError for anything not plain."""
    u = urlsplit(url)
    if u.scheme not in ("redis", "rediss", "unix") or u.fragment:
        raise RespError(f"unsupported Redis URL scheme or fragment: {u.scheme!r}")
    query = parse_qs(u.query, keep_blank_values=True, strict_parsing=False)
    if set(query) - {"db"}:
        raise RespError(f"unsupported Redis URL options: {sorted(query)}")
    db_text = u.path.strip("/") if u.scheme != "unix" else ""
    if "db" in query:  # as redis-py: the query's db wins over the path's
        db_text = query["db"][0]
    try:
        db = int(db_text or 0)
        port = u.port or DEFAULT_PORT
    except ValueError as e:
        raise RespError(f"bad database or port in the Redis URL: {e}") from e
    username = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password is not None else None
    if username and password is None:
        raise RespError("a Redis URL user without a password")
    return Target(
        tls=u.scheme == "rediss",
        host=u.hostname or "localhost",
        port=port,
        unix_path=unquote(u.path) if u.scheme == "unix" else "",
        username=username,
        password=password,
        db=db,
    )


class RespConnection:
    """One connection speaking RESP2: :meth:`call` sends commands pipelined and reads
    their replies; :meth:`send` and :meth:`receive` do the two halves apart."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        #: Bytes received and not parsed yet (read with ``recv``, so a timed-out wait
        #: leaves the connection usable, unlike a ``makefile`` reader).
        self.buffer = bytearray()
        #: Commands (AUTH, CLIENT SETNAME, SELECT) sent ahead of the first :meth:`send`'s.
        self._pending: list[Sequence[str]] = []
        #: Replies of those setup commands sent and not read yet.
        self._setup_unread = 0
        #: Replies sent for and not read yet (setup commands included): a connection
        #: with any is not reused for other commands.
        self.unread = 0

    @classmethod
    def open(
        cls,
        settings: Settings,
        timeout: float,
        name: str | None = None,
        url: str | None = None,
        address: tuple[str, int] | None = None,
    ) -> RespConnection:
        """Connect to ``url`` (``SCSSQ_REDIS_URL`` by default; at ``address`` instead of
        the URL's host when given, e.g. a master found through Sentinel), authenticate
        and, with ``name``, name the connection (the replies are read with the first
        :meth:`receive`, so AUTH, CLIENT SETNAME and SELECT cost no round trip of their
        own). ``timeout`` bounds the connect and every later read."""
        target = parse_url(url or settings.redis_url)
        if address is not None:
            target = replace(target, host=address[0], port=address[1], unix_path="")
        if target.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(target.unix_path)
        else:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.tls:
            sock = _wrap_tls(sock, target.host, settings)
        conn = cls(sock)
        if target.password is not None:
            auth = [target.username, target.password] if target.username else [target.password]
            conn._pending.append(["AUTH", *auth])
        if name is not None:
            conn._pending.append(["CLIENT", "SETNAME", name])
        if target.db:
            conn._pending.append(["SELECT", str(target.db)])
        return conn

    def call(self, *commands: Sequence[str]) -> list[Reply]:
        """Send ``commands`` in one write, return their replies (an error reply raises)."""
        self.send(*commands)
        replies = self.receive(len(commands))
        for reply in replies:
            if isinstance(reply, RespError):
                raise reply
        return replies

    def send(self, *commands: Sequence[str]) -> None:
        """Send ``commands`` (after any setup command not sent yet) in one write."""
        setup, self._pending = self._pending, []
        self.unread += len(setup) + len(commands)  # counted first: a partial write too
        self.sock.sendall(b"".join(map(encode, [*setup, *commands])))
        self._setup_unread += len(setup)

    def receive(self, count: int) -> list[Any]:
        """The next ``count`` replies, an error reply as a RespError *in* the list; a
        setup command's error reply (a wrong password) raises, after every reply is read."""
        setup = [self._read() for _ in range(self._setup_unread)]
        self._setup_unread = 0
        replies = [self._read() for _ in range(count)]
        self.unread -= len(setup) + count
        for reply in setup:
            if isinstance(reply, RespError):
                raise reply
        return replies

    def readable(self, timeout: float) -> bool:
        """Whether a reply (a pub/sub message) starts within ``timeout`` seconds."""
        if self.buffer or self._tls_pending():
            return True
        return bool(select.select([self.sock], [], [], max(0.0, timeout))[0])

    def _tls_pending(self) -> bool:
        pending = getattr(self.sock, "pending", None)  # TLS: bytes decrypted, unread
        return bool(pending is not None and pending())

    def idle(self) -> bool:
        """Whether this connection can take new commands: every reply read, and nothing
        readable (not closed by the server, as its ``timeout`` closes idle clients)."""
        if self.unread or self.buffer:
            return False
        try:
            if self._tls_pending():
                return False
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RespConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RespError("connection closed by Redis")
        self.buffer += chunk

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > 65536:
                raise RespError("malformed reply: a line longer than 64 KB")
            self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def _read(self) -> Any:
        line = self._line()
        kind, body = line[:1], line[1:]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            return Refused(f"{REFUSED}{body.decode(errors='replace')}")
        if kind == b":":
            return int(body)
        if kind == b"$":
            return self._bulk(int(body))
        if kind == b"*":
            n = int(body)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RespError(f"unexpected reply type {kind!r}")

    def _bulk(self, size: int) -> bytes | None:
        if size < 0:
            return None
        if size > MAX_BULK:
            raise RespError(f"reply of {size} bytes is larger than {MAX_BULK}")
        while len(self.buffer) < size + 2:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[: size + 2]
        return data


def encode(command: Sequence[str]) -> bytes:
    """One command in RESP (an array of bulk strings, UTF-8)."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def _wrap_tls(sock: socket.socket, host: str, settings: Settings) -> socket.socket:
    """Verified TLS, the same checks as :func:`..coordination.connections.redis_client`."""
    import ssl

    context = ssl.create_default_context(cafile=settings.redis_ca_file or None)
    if settings.redis_cert_file:
        context.load_cert_chain(settings.redis_cert_file, settings.redis_key_file or None)
    return context.wrap_socket(sock, server_hostname=host)
