"""Connections to Redis through redis-py: the one place that turns settings into one.

Workers (locks, results, pub/sub, heartbeat) build their Redis clients here, and so
does ``scssq gc`` (:mod:`cli.gc`, which runs with the workers' credentials);
``celeryconfig.py`` takes the broker's TLS options from :func:`broker_ssl`. The
client speaks RESP itself (:mod:`cli.transport`, :mod:`compiler_tasks.protocol.resp`)
with the same TLS checks. A ``rediss://`` URL always verifies the server's
certificate and host name, against ``SCSSQ_REDIS_CA_FILE`` or the system's
CAs. That matters for the broker: Celery's Redis transport (kombu), given a
bare ``rediss://`` URL, encrypts with ``ssl_cert_reqs=CERT_NONE``, i.e.
without checking who answers. ``SCSSQ_REDIS_CERT_FILE``/``SCSSQ_REDIS_KEY_FILE``
add a client certificate for servers that require one.

Passwords travel in the URL (``rediss://user:password@host:port/db``) and
never in a message: log and error text shows :func:`settings.redact_url`.
Imports only redis-py, never Celery.

This module alone decides between the URL and Sentinel for redis-py and the broker.
With ``SCSSQ_SENTINELS`` and ``SCSSQ_SENTINEL_SERVICE`` set, :func:`redis_client`
returns redis-py's ``Sentinel(...).master_for(...)``, whose pool asks the Sentinels
where the master is for every new connection (so a reconnection after a failover
reaches the new master, and a connection to a master that was demoted is dropped);
:func:`broker_url` and :func:`broker_transport_options` give Celery kombu's Sentinel
transport (``sentinel://`` URLs with ``master_name``). The URL then gives only the
master's user, password, TLS and database. The client finds the master with
:mod:`compiler_tasks.protocol.sentinel`, which asks the same way.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.sentinel

from ..protocol.sentinel import SENTINEL_TIMEOUT
from ..settings import Settings

#: Seconds to wait for a TCP (and TLS) connection to Redis.
CONNECT_TIMEOUT = 5


def uses_tls(url: str) -> bool:
    """True for a ``rediss://`` URL."""
    return urlsplit(url).scheme == "rediss"


def _tls_files(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if settings.redis_ca_file:
        options["ssl_ca_certs"] = settings.redis_ca_file
    if settings.redis_cert_file:
        options["ssl_certfile"] = settings.redis_cert_file
    if settings.redis_key_file:
        options["ssl_keyfile"] = settings.redis_key_file
    return options


def redis_client(
    settings: Settings, name: str | None = None, timeout: float | None = None
) -> redis.Redis:
    """A client of ``SCSSQ_REDIS_URL`` (of the master the Sentinels name, when set) with
    bounded connect time; ``name`` is CLIENT SETNAME; ``timeout`` caps the reply timeout."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": min(CONNECT_TIMEOUT, timeout or CONNECT_TIMEOUT),
        # A reply that does not come (a connection that died silently) is an error, not
        # a wait forever: redis-py then drops the connection and the caller reconnects.
        "socket_timeout": min(settings.redis_reply_timeout, timeout or float("inf")),
        "socket_keepalive": True,
        "health_check_interval": 0,
        "client_name": name,
    }
    if settings.sentinels:
        sentinel = redis.sentinel.Sentinel(
            list(settings.sentinels),
            sentinel_kwargs=sentinel_kwargs(settings),
            **kwargs,
            **_master_kwargs(settings),
        )
        return sentinel.master_for(settings.sentinel_service, redis_class=redis.Redis)
    if uses_tls(settings.redis_url):
        kwargs.update(ssl_cert_reqs="required", ssl_check_hostname=True, **_tls_files(settings))
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def _master_kwargs(settings: Settings) -> dict[str, Any]:
    """The master's user, password, database and TLS, from ``SCSSQ_REDIS_URL``."""
    parsed = redis.connection.parse_url(settings.redis_url)
    kwargs = {k: parsed[k] for k in ("username", "password", "db") if parsed.get(k) is not None}
    if uses_tls(settings.redis_url):
        kwargs.update(ssl=True, ssl_cert_reqs="required", ssl_check_hostname=True)
        kwargs.update(_tls_files(settings))
    return kwargs


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """How to talk to each Sentinel (redis-py's and kombu's ``sentinel_kwargs``): short
    timeouts (a Sentinel answers from memory), its password and TLS."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
    }
    if settings.sentinel_password is not None:
        kwargs["password"] = settings.sentinel_password
        if settings.sentinel_username:
            kwargs["username"] = settings.sentinel_username
    if settings.sentinel_tls:
        kwargs.update(ssl=True, ssl_cert_reqs="required", ssl_check_hostname=True)
        kwargs.update(_tls_files(settings))
    return kwargs


def broker_url(settings: Settings) -> str:
    """Celery's ``broker_url``: ``SCSSQ_BROKER_URL``, or with Sentinels one
    ``sentinel://`` URL per Sentinel (kombu's Sentinel transport) carrying the master's
    user, password and database from ``SCSSQ_REDIS_URL``."""
    if not settings.sentinels:
        return settings.broker_url
    userinfo, at, _ = urlsplit(settings.redis_url).netloc.rpartition("@")
    db = _master_kwargs(settings).get("db", 0)
    hosts = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in settings.sentinels]
    return ";".join(f"sentinel://{userinfo}{at}{host}/{db}" for host in hosts)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options that Sentinel needs (none without Sentinels)."""
    if not settings.sentinels:
        return {}
    return {
        "master_name": settings.sentinel_service,
        "sentinel_kwargs": sentinel_kwargs(settings),
    }


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` for a ``rediss://`` broker (verifying), else None."""
    if not uses_tls(settings.broker_url):
        return None
    return {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        **_tls_files(settings),
    }
