"""Finding the Redis master through Sentinel, on the standard library (the client side).

With ``SCSSQ_SENTINELS`` and ``SCSSQ_SENTINEL_SERVICE`` set, a client asks where the
master is each time it opens a connection, so a connection opened after a failover
(a reconnection in a deadline-bounded retry loop) reaches the new master. The
algorithm is the one of Redis's guidelines for Sentinel clients, which redis-py's
``Sentinel`` follows too (it asks ``SENTINEL MASTERS`` and reads the same state):

1. ask each Sentinel in turn, the one that answered last time first,
   ``SENTINEL get-master-addr-by-name <service>`` (with ``AUTH`` and TLS as
   ``SCSSQ_SENTINEL_*`` say, and a short timeout: a Sentinel answers from memory);
2. connect to the address it names with the master's own credentials (from
   ``SCSSQ_REDIS_URL``) and check with ``ROLE``, on the connection that is then kept,
   that it is a master: a Sentinel partitioned from the others may name a demoted one;
3. none did: :class:`~compiler_tasks.errors.SentinelUnavailable`, naming every
   Sentinel asked and what each said.

Workers and the redis-py paths use redis-py's own ``Sentinel`` instead
(:mod:`compiler_tasks.coordination.connections`), and the broker kombu's Sentinel
transport (``celeryconfig.py``).
"""

from __future__ import annotations

from urllib.parse import quote

from ..errors import SentinelUnavailable
from ..settings import Settings
from .resp import RespConnection, RespError

#: Seconds to connect to one Sentinel (or the master it names) and get its reply.
SENTINEL_TIMEOUT = 1.0

#: Sentinels -> the one that answered last (asked first next time).
_answered: dict[tuple[tuple[str, int], ...], tuple[str, int]] = {}


def connect(settings: Settings, timeout: float, name: str | None = None) -> RespConnection:
    """A connection to Redis: to the master Sentinel names when ``SCSSQ_SENTINELS`` is
    set (found now, and checked with ``ROLE`` on this very connection), else to
    ``SCSSQ_REDIS_URL``; see :meth:`RespConnection.open`. SentinelUnavailable when no
    Sentinel names a server that answers as the master."""
    if not settings.sentinels:
        return RespConnection.open(settings, timeout, name)
    said = []
    short = min(timeout, SENTINEL_TIMEOUT)
    for sentinel in _in_turn(settings.sentinels):
        where = _shown(sentinel)
        try:
            address = _ask(settings, sentinel, short)
        except (OSError, RespError) as e:
            said.append(f"{where}: {e or type(e).__name__}")
            continue
        if address is None:
            said.append(f"{where}: knows no master named {settings.sentinel_service!r}")
            continue
        try:
            conn = _master(settings, address, short, name)
        except (OSError, RespError) as e:
            said.append(f"{where} named {_shown(address)}, which failed: {_hint(e)}")
            continue
        if isinstance(conn, str):
            said.append(f"{where} named {_shown(address)}, which is a {conn}, not the master")
            continue
        _answered[settings.sentinels] = sentinel
        conn.sock.settimeout(timeout)
        return conn
    raise SentinelUnavailable(
        f"no master of {settings.sentinel_service!r} found through the Sentinels "
        f"{', '.join(map(_shown, settings.sentinels))} ({'; '.join(said)}); check "
        "SCSSQ_SENTINELS, SCSSQ_SENTINEL_SERVICE and the Sentinels' password and TLS "
        "(SCSSQ_SENTINEL_PASSWORD, SCSSQ_SENTINEL_TLS)"
    )


def _master(
    settings: Settings, address: tuple[str, int], timeout: float, name: str | None
) -> RespConnection | str:
    """A connection to ``address`` (the master's credentials, from ``SCSSQ_REDIS_URL``)
    when ``ROLE`` there says master, else (closed) what it says it is: slave, sentinel."""
    conn = RespConnection.open(settings, timeout, name, address=address)
    try:
        (reply,) = conn.call(("ROLE",))
        if not isinstance(reply, list) or not reply or not isinstance(reply[0], bytes):
            raise RespError(f"unexpected reply to ROLE: {reply!r}")
    except BaseException:
        conn.close()
        raise
    if reply[0] == b"master":
        return conn
    conn.close()
    return reply[0].decode()


def sentinel_url(settings: Settings, sentinel: tuple[str, int]) -> str:
    """The URL of one Sentinel: its TLS and credentials from ``SCSSQ_SENTINEL_*``."""
    scheme = "rediss" if settings.sentinel_tls else "redis"
    user = ""
    if settings.sentinel_password is not None:
        user = quote(settings.sentinel_username or "", safe="")
        user += ":" + quote(settings.sentinel_password, safe="") + "@"
    return f"{scheme}://{user}{_shown(sentinel)}/0"


def _ask(settings: Settings, sentinel: tuple[str, int], timeout: float) -> tuple[str, int] | None:
    """The master address ``sentinel`` holds for the service, None if it knows none."""
    url = sentinel_url(settings, sentinel)
    with RespConnection.open(settings, timeout, url=url) as conn:
        (reply,) = conn.call(("SENTINEL", "get-master-addr-by-name", settings.sentinel_service))
    if reply is None:
        return None
    if not isinstance(reply, list) or len(reply) != 2:
        raise RespError(f"unexpected reply to SENTINEL get-master-addr-by-name: {reply!r}")
    host, port = reply
    if not isinstance(host, bytes) or not isinstance(port, bytes) or not port.isdigit():
        raise RespError(f"unexpected master address from a Sentinel: {reply!r}")
    return host.decode(), int(port)


def _in_turn(sentinels: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    first = _answered.get(sentinels)
    return sorted(sentinels, key=lambda s: s != first)  # stable: the rest keep their order


def _shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hint(error: Exception) -> str:
    text = str(error) or type(error).__name__
    if "NOPERM" in text and "role" in text.lower():
        text += " (grant the Redis user +role, as deploy/redis-acl.conf does)"
    return text
