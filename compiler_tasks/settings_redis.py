"""The Redis rows of the settings table: Redis, the broker, and Redis Sentinel.

:class:`RedisSettings` is the first part of :class:`compiler_tasks.settings.Settings`
(which inherits its fields, so they lead the table and the docs): where Redis is, how
to reach it (TLS files, timeouts), and, for high availability, the Sentinels that name
its master. Read it through ``Settings.from_env``; its cross-field rules
(:meth:`RedisSettings.check_redis`) run there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .envvars import (
    ADDRESSES,
    FLAG,
    INTEGER,
    NAME,
    NUMBER,
    PEM_FILE,
    REDIS_URL,
    TEXT,
    redact_url,
    setting,
)
from .errors import ConfigError

# The groups of these rows, in the order the docs show them.
REDIS = "Redis and the broker"
SENTINEL = "Redis Sentinel (high availability)"
_RC = "`rediss://` only: "


@dataclass(frozen=True)
class RedisSettings:
    """Where Redis is and how to reach it; the first rows of ``Settings``."""

    redis_url: str = setting(
        "SCSSQ_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "Redis for locks, results and pub/sub; also the Celery broker unless "
        "`SCSSQ_BROKER_URL` is set. Redis must run with `maxmemory-policy noeviction`.",
        REDIS_URL,
        REDIS,
    )
    broker_url: str = setting(
        "SCSSQ_BROKER_URL",
        "redis://127.0.0.1:6379/0",
        "Celery broker.",
        REDIS_URL,
        REDIS,
        shown="`SCSSQ_REDIS_URL`",
        same_as="redis_url",
    )
    redis_ca_file: str | None = setting(
        "SCSSQ_REDIS_CA_FILE",
        None,
        _RC + "CA bundle that signed Redis's certificate; the certificate is always verified.",
        PEM_FILE,
        REDIS,
        shown="the system's CAs",
    )
    redis_cert_file: str | None = setting(
        "SCSSQ_REDIS_CERT_FILE",
        None,
        _RC + "client certificate, when Redis requires one (mutual TLS).",
        PEM_FILE,
        REDIS,
        shown="none",
    )
    redis_key_file: str | None = setting(
        "SCSSQ_REDIS_KEY_FILE",
        None,
        _RC + "the client certificate's key (mutual TLS).",
        PEM_FILE,
        REDIS,
        shown="none",
    )
    prefix: str = setting(
        "SCSSQ_PREFIX",
        "scssq",
        "Prefix of every Redis key and channel scssq uses (one fleet per prefix).",
        NAME,
        REDIS,
    )
    queue: str = setting(
        "SCSSQ_QUEUE",
        "scssq",
        "Celery queue the compile tasks travel on (KEDA scales on its length).",
        NAME,
        REDIS,
    )
    redis_reply_timeout: float = setting(
        "SCSSQ_REDIS_REPLY_TIMEOUT",
        5.0,
        "Seconds any command to Redis or the broker (a GET, a Lua call, a publish, an ack) "
        "waits for its reply before its connection counts as dead and is replaced. Without "
        "a limit, a connection that died silently (a dropped NAT or firewall entry: no FIN, "
        "no RST) blocks a worker, or a waiting client, for good. Blocking reads with their "
        "own timeout (a waiter's subscription) are not cut short by it.",
        NUMBER,
        REDIS,
        minimum=2.0,
        unit="s",
    )
    broker_health_check_interval: int = setting(
        "SCSSQ_BROKER_HEALTH_CHECK_INTERVAL",
        10,
        "Seconds between kombu's checks of a worker's long-lived broker connections: a "
        "`BRPOP` whose reply is this much overdue (it always comes within 1 s from a live "
        "server) is dropped and reconnected, and the pub/sub connection is pinged.",
        INTEGER,
        REDIS,
        minimum=1,
        unit="s",
    )
    result_ttl: int = setting(
        "SCSSQ_RESULT_TTL",
        7 * 24 * 3600,
        "How long results stay in Redis (7 days).",
        INTEGER,
        REDIS,
        minimum=1,
        unit="s",
    )
    sentinels: tuple[tuple[str, int], ...] = setting(
        "SCSSQ_SENTINELS",
        (),
        "Redis Sentinels to ask where the master is. With `SCSSQ_SENTINEL_SERVICE`, every "
        "connection (workers, broker, clients) goes to the master they name, found again on "
        "each reconnection; `SCSSQ_REDIS_URL` then gives only the master's user, password, "
        "TLS (`rediss://`) and database, not its host.",
        ADDRESSES,
        SENTINEL,
        shown="none: Redis is at `SCSSQ_REDIS_URL`",
    )
    sentinel_service: str = setting(
        "SCSSQ_SENTINEL_SERVICE",
        "",
        "Name the Sentinels monitor the master under (`sentinel monitor NAME ...`).",
        NAME,
        SENTINEL,
        shown="none",
    )
    sentinel_username: str | None = setting(
        "SCSSQ_SENTINEL_USERNAME",
        None,
        "ACL user to authenticate to the Sentinels with (with `SCSSQ_SENTINEL_PASSWORD`).",
        TEXT,
        SENTINEL,
        shown="none (`default`)",
    )
    sentinel_password: str | None = setting(
        "SCSSQ_SENTINEL_PASSWORD",
        None,
        "Password of the Sentinels (their `requirepass`, or the ACL user's); the master's "
        "own is in `SCSSQ_REDIS_URL`.",
        TEXT,
        SENTINEL,
        shown="none",
    )
    sentinel_tls: bool = setting(
        "SCSSQ_SENTINEL_TLS",
        False,
        "Talk to the Sentinels over verified TLS, with the CA and client files of "
        "`SCSSQ_REDIS_CA_FILE`/`CERT_FILE`/`KEY_FILE`.",
        FLAG,
        SENTINEL,
        shown="`0` (plain TCP)",
    )

    def check_redis(self) -> None:
        """Sentinel's settings go together, with a Redis URL that names no socket."""
        problem = ""
        if self.sentinels and not self.sentinel_service:
            problem = "SCSSQ_SENTINELS is set but SCSSQ_SENTINEL_SERVICE is not: set it to "
            problem += "the name the Sentinels monitor the master under"
        elif self.sentinel_service and not self.sentinels:
            problem = f"SCSSQ_SENTINEL_SERVICE={self.sentinel_service!r} needs SCSSQ_SENTINELS "
            problem += "(host:port[,host:port...]) to ask; set it, or unset both"
        elif self.sentinels and self.redis_url.startswith("unix:"):
            problem = "SCSSQ_REDIS_URL is a unix:// URL, but Sentinel names a master by host "
            problem += "and port: use redis:// (or rediss://) with the master's password and db"
        elif self.sentinels and self.broker_url != self.redis_url:
            problem = f"SCSSQ_BROKER_URL={redact_url(self.broker_url)!r} is another Redis, but "
            problem += "with SCSSQ_SENTINELS the broker is the master they name: unset it"
        if problem:
            raise ConfigError(problem)

    @property
    def redis_shown(self) -> str:
        """Where Redis is, for messages: the Sentinels and service, or the URL (redacted)."""
        if not self.sentinels:
            return redact_url(self.redis_url)
        listed = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"the master of {self.sentinel_service!r} (Sentinels {listed})"
