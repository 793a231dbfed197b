"""Connections to Redis: the one place that turns settings into a client.

Workers (locks, results, pub/sub, heartbeat) and clients (keys, waits) build
their Redis clients here; ``celeryconfig.py`` takes the broker's TLS options
from :func:`broker_ssl`. A ``rediss://`` URL always verifies the server's
certificate and host name, against ``SCSSQ_REDIS_CA_FILE`` or the system's
CAs. That matters for the broker: Celery's Redis transport (kombu), given a
bare ``rediss://`` URL, encrypts with ``ssl_cert_reqs=CERT_NONE``, i.e.
without checking who answers. ``SCSSQ_REDIS_CERT_FILE``/``SCSSQ_REDIS_KEY_FILE``
add a client certificate for servers that require one.

Passwords travel in the URL (``rediss://user:password@host:port/db``) and
never in a message: log and error text shows :func:`settings.redact_url`.
Imports only redis-py: the client's cache-hit path stays free of Celery.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import redis

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


def redis_client(settings: Settings, name: str | None = None) -> redis.Redis:
    """A client of ``SCSSQ_REDIS_URL`` with bounded connect time; ``name`` is CLIENT SETNAME."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        # A reply that does not come (a connection that died silently) is an error, not
        # a wait forever: redis-py then drops the connection and the caller reconnects.
        "socket_timeout": settings.redis_reply_timeout,
        "socket_keepalive": True,
        "health_check_interval": 0,
        "client_name": name,
    }
    if uses_tls(settings.redis_url):
        kwargs.update(ssl_cert_reqs="required", ssl_check_hostname=True, **_tls_files(settings))
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` for a ``rediss://`` broker (verifying), else None."""
    if not uses_tls(settings.broker_url):
        return None
    return {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        **_tls_files(settings),
    }
