"""The one typed settings object of scssq, read from ``SCSSQ_*`` variables.

Every default is a named constant below with a comment saying what it is for.
A variable holding a value scssq cannot use fails at once with
:class:`~compiler_tasks.errors.ConfigError` naming the variable and the fix.
``celeryconfig.py`` and every other module read their settings from here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import ConfigError

#: Redis for locks, results and pub/sub (also the broker unless SCSSQ_BROKER_URL).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Prefix of every Redis key and channel scssq uses (one fleet per prefix).
DEFAULT_PREFIX = "scssq"
#: Celery queue the compile tasks travel on (KEDA scales on its length).
DEFAULT_QUEUE = "scssq"
#: Where artifacts live: ``file:///abs/path`` (default, no cloud) or ``s3://bucket/prefix``.
DEFAULT_STORE_DIR = "~/.local/share/scssq/store"
#: Engine used when a submit does not name one.
DEFAULT_ENGINE = "libsass"
#: Lock time-to-live in seconds; holders renew every third of it.
DEFAULT_LOCK_TTL = 30.0
#: Wall-clock limit for all engine work of one task, in seconds.
DEFAULT_COMPILE_TIMEOUT = 120.0
#: Address-space limit of an engine process, in MiB.
DEFAULT_ENGINE_MEMORY_MB = 2048
#: Largest CSS (or source map) one entry may produce, in bytes.
DEFAULT_MAX_OUTPUT_BYTES = 32 * 1024 * 1024
#: Largest warnings/debug text kept from one compile, in bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
#: Compiles an engine process serves before it is replaced (bounds its memory).
DEFAULT_ENGINE_MAX_COMPILES = 500
#: Compiles one Dart Sass compiler process serves before it is replaced. The process is
#: long-lived (no VM start per compile); replacing it bounds its memory.
DEFAULT_DART_MAX_COMPILES = 1000
#: How long results stay in Redis, in seconds (7 days).
DEFAULT_RESULT_TTL = 7 * 24 * 3600
#: Bundles whose archive is larger than this many bytes go through the store.
DEFAULT_INLINE_BUNDLE_MAX = 512 * 1024
#: Largest bundle accepted, counting the uncompressed size of its files.
DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024
#: Most files a bundle may hold.
DEFAULT_MAX_BUNDLE_FILES = 20_000
#: Retries of a task after an infrastructure failure (store, Redis, engine crash).
DEFAULT_TASK_RETRIES = 3
#: Deliveries of one message before it is declared poison (worker died each time).
DEFAULT_MAX_DELIVERIES = 3
#: Seconds an unacknowledged message waits before Redis redelivers it.
DEFAULT_VISIBILITY_TIMEOUT = 900
#: Seconds any command to Redis (the service's or the broker's: a GET, a Lua call, a
#: publish, an ack) waits for its reply before its connection counts as dead and is
#: replaced. Without a limit, a connection that died silently (a dropped NAT or firewall
#: entry: no FIN, no RST) blocks a worker, or a waiting client, for good. Blocking reads
#: with their own timeout (a waiter's subscription) are not cut short by it. redis-py 8
#: has the same default; kombu, for the broker, has none.
DEFAULT_REDIS_REPLY_TIMEOUT = 5.0
#: Seconds between kombu's checks of a worker's long-lived broker connections: a BRPOP
#: whose reply is this much overdue (it always comes within 1 s from a live server) is
#: dropped and reconnected, and the pub/sub connection is pinged.
DEFAULT_BROKER_HEALTH_CHECK_INTERVAL = 10
#: Seconds a worker stays listed as alive after its last heartbeat.
DEFAULT_WORKER_ALIVE_WINDOW = 30.0
#: File a worker touches from its consumer's timer; liveness probes read its age.
DEFAULT_HEARTBEAT_FILE = "/tmp/scssq-worker-heartbeat"
#: A worker whose heartbeat file is older than this many seconds is not alive.
DEFAULT_LIVENESS_MAX_AGE = 30.0
#: Seconds a client waits for the fleet (queue + compile + download).
DEFAULT_SUBMIT_TIMEOUT = 600.0
#: Share of submits traced in Sentry (when SENTRY_DSN is set): 0 none, 1 every one.
DEFAULT_TRACES_SAMPLE_RATE = 0.1
#: Port of a worker's Prometheus endpoint (/metrics); 0 turns it off.
DEFAULT_METRICS_PORT = 0
#: Folder a worker unpacks each bundle into for its engine ("": the system's temp folder,
#: TMPDIR or /tmp). A memory-backed folder (tmpfs) saves writing and removing every file
#: of every bundle on disk; deploy/ mounts one (README, Configuration).
DEFAULT_WORK_DIR = ""

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
ENGINES = ("libsass", "dart-sass")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """The string in ``name``, or ``default`` when unset or empty."""
    value = _raw(env, name)
    return default if value is None else value


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    """A number of at least ``minimum`` from ``name``; a bad value names the variable."""
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is not a number; set it to e.g. {default:g} or unset it"
        ) from None
    if not number >= minimum or number != number or number == float("inf"):
        raise ConfigError(f"{name}={value!r} must be a finite number >= {minimum:g}")
    return number


def env_fraction(env: Mapping[str, str], name: str, default: float) -> float:
    """A number from 0 to 1 (a rate) from ``name``; a bad value names the variable."""
    number = env_float(env, name, default, 0.0)
    if number > 1.0:
        raise ConfigError(f"{name}={number:g} must be a rate from 0 to 1 (e.g. {default:g})")
    return number


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """An integer of at least ``minimum`` from ``name``; a bad value names the variable."""
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is not an integer; set it to e.g. {default} or unset it"
        ) from None
    if number < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")
    return number


def _check_redis_url(name: str, url: str) -> str:
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"{name}={redact_url(url)!r} is not a Redis URL; "
            "use redis://host:port/db, rediss:// for TLS or unix:///path"
        )
    return url


def _store_url(env: Mapping[str, str]) -> str:
    value = _raw(env, "SCSSQ_STORE")
    if value is None:
        return "file://" + str(Path(DEFAULT_STORE_DIR).expanduser())
    parts = urlsplit(value)
    if parts.scheme == "file" and parts.path.startswith("/") and not parts.netloc:
        return value
    if parts.scheme == "s3" and parts.netloc:
        return value
    raise ConfigError(
        f"SCSSQ_STORE={value!r} is not a store URL; use file:///absolute/path "
        "or s3://bucket/optional/prefix"
    )


def _tls_file(env: Mapping[str, str], name: str) -> str | None:
    """A PEM file named by ``name`` (absolute path), or None when unset."""
    value = _raw(env, name)
    if value is None:
        return None
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(f"{name}={value!r} is not a readable file; point it at a PEM file")
    return path


def store_identity(url: str) -> str:
    """The store ``url`` names, comparable between machines: no credentials, port,
    query or redundant slashes (``file:///a//b/`` and ``file:///a/b`` are one store;
    an S3 store is its bucket and prefix, whatever endpoint reaches it)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = re.sub("/+", "/", unquote(parts.path)).rstrip("/") or "/"
        return "file://" + os.path.normpath(path).replace(os.sep, "/")
    prefix = parts.path.strip("/")
    return f"{parts.scheme}://{parts.hostname or ''}" + (f"/{prefix}" if prefix else "")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@dataclass(frozen=True)
class Settings:
    """Everything configurable about scssq; build with :meth:`from_env`."""

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = DEFAULT_REDIS_URL
    #: rediss:// only: CA bundle that signed Redis's certificate (default: the system's CAs).
    redis_ca_file: str | None = None
    #: rediss:// only: client certificate and key, when Redis requires them (mutual TLS).
    redis_cert_file: str | None = None
    redis_key_file: str | None = None
    prefix: str = DEFAULT_PREFIX
    queue: str = DEFAULT_QUEUE
    store_url: str = "file://" + DEFAULT_STORE_DIR
    engine: str = DEFAULT_ENGINE
    lock_ttl: float = DEFAULT_LOCK_TTL
    compile_timeout: float = DEFAULT_COMPILE_TIMEOUT
    engine_memory_mb: int = DEFAULT_ENGINE_MEMORY_MB
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    engine_max_compiles: int = DEFAULT_ENGINE_MAX_COMPILES
    dart_max_compiles: int = DEFAULT_DART_MAX_COMPILES
    result_ttl: int = DEFAULT_RESULT_TTL
    inline_bundle_max: int = DEFAULT_INLINE_BUNDLE_MAX
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    max_bundle_files: int = DEFAULT_MAX_BUNDLE_FILES
    task_retries: int = DEFAULT_TASK_RETRIES
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    redis_reply_timeout: float = DEFAULT_REDIS_REPLY_TIMEOUT
    broker_health_check_interval: int = DEFAULT_BROKER_HEALTH_CHECK_INTERVAL
    worker_alive_window: float = DEFAULT_WORKER_ALIVE_WINDOW
    heartbeat_file: str = DEFAULT_HEARTBEAT_FILE
    liveness_max_age: float = DEFAULT_LIVENESS_MAX_AGE
    traces_sample_rate: float = DEFAULT_TRACES_SAMPLE_RATE
    metrics_port: int = DEFAULT_METRICS_PORT
    work_dir: str = DEFAULT_WORK_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``SCSSQ_*`` variable; raise ConfigError naming a bad one."""
        env = os.environ if env is None else env
        redis_url = _check_redis_url(
            "SCSSQ_REDIS_URL", env_str(env, "SCSSQ_REDIS_URL", DEFAULT_REDIS_URL)
        )
        broker_url = _check_redis_url(
            "SCSSQ_BROKER_URL", env_str(env, "SCSSQ_BROKER_URL", redis_url)
        )
        prefix = env_str(env, "SCSSQ_PREFIX", DEFAULT_PREFIX)
        queue = env_str(env, "SCSSQ_QUEUE", DEFAULT_QUEUE)
        for name, value in (("SCSSQ_PREFIX", prefix), ("SCSSQ_QUEUE", queue)):
            if not _PREFIX_RE.match(value):
                raise ConfigError(f"{name}={value!r}: use 1-64 letters, digits, '.', '_' or '-'")
        engine = env_str(env, "SCSSQ_ENGINE", DEFAULT_ENGINE)
        if engine not in ENGINES:
            raise ConfigError(f"SCSSQ_ENGINE={engine!r}: choose one of {', '.join(ENGINES)}")
        settings = cls(
            redis_url=redis_url,
            broker_url=broker_url,
            redis_ca_file=_tls_file(env, "SCSSQ_REDIS_CA_FILE"),
            redis_cert_file=_tls_file(env, "SCSSQ_REDIS_CERT_FILE"),
            redis_key_file=_tls_file(env, "SCSSQ_REDIS_KEY_FILE"),
            prefix=prefix,
            queue=queue,
            store_url=_store_url(env),
            engine=engine,
            lock_ttl=env_float(env, "SCSSQ_LOCK_TTL", DEFAULT_LOCK_TTL, 0.3),
            compile_timeout=env_float(env, "SCSSQ_COMPILE_TIMEOUT", DEFAULT_COMPILE_TIMEOUT, 0.1),
            engine_memory_mb=env_int(env, "SCSSQ_ENGINE_MEMORY_MB", DEFAULT_ENGINE_MEMORY_MB, 64),
            max_output_bytes=env_int(env, "SCSSQ_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES, 1024),
            max_message_bytes=env_int(
                env, "SCSSQ_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, 256
            ),
            engine_max_compiles=env_int(
                env, "SCSSQ_ENGINE_MAX_COMPILES", DEFAULT_ENGINE_MAX_COMPILES, 1
            ),
            dart_max_compiles=env_int(env, "SCSSQ_DART_MAX_COMPILES", DEFAULT_DART_MAX_COMPILES, 1),
            result_ttl=env_int(env, "SCSSQ_RESULT_TTL", DEFAULT_RESULT_TTL, 1),
            inline_bundle_max=env_int(env, "SCSSQ_INLINE_BUNDLE_MAX", DEFAULT_INLINE_BUNDLE_MAX, 0),
            max_bundle_bytes=env_int(env, "SCSSQ_MAX_BUNDLE_BYTES", DEFAULT_MAX_BUNDLE_BYTES, 1024),
            max_bundle_files=env_int(env, "SCSSQ_MAX_BUNDLE_FILES", DEFAULT_MAX_BUNDLE_FILES, 1),
            task_retries=env_int(env, "SCSSQ_TASK_RETRIES", DEFAULT_TASK_RETRIES, 0),
            max_deliveries=env_int(env, "SCSSQ_MAX_DELIVERIES", DEFAULT_MAX_DELIVERIES, 1),
            visibility_timeout=env_int(
                env, "SCSSQ_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT, 1
            ),
            redis_reply_timeout=env_float(
                env, "SCSSQ_REDIS_REPLY_TIMEOUT", DEFAULT_REDIS_REPLY_TIMEOUT, 2.0
            ),
            broker_health_check_interval=env_int(
                env, "SCSSQ_BROKER_HEALTH_CHECK_INTERVAL", DEFAULT_BROKER_HEALTH_CHECK_INTERVAL, 1
            ),
            worker_alive_window=env_float(
                env, "SCSSQ_WORKER_ALIVE_WINDOW", DEFAULT_WORKER_ALIVE_WINDOW, 1.0
            ),
            heartbeat_file=env_str(env, "SCSSQ_HEARTBEAT_FILE", DEFAULT_HEARTBEAT_FILE),
            liveness_max_age=env_float(
                env, "SCSSQ_LIVENESS_MAX_AGE", DEFAULT_LIVENESS_MAX_AGE, 1.0
            ),
            traces_sample_rate=env_fraction(
                env, "SCSSQ_TRACES_SAMPLE_RATE", DEFAULT_TRACES_SAMPLE_RATE
            ),
            metrics_port=env_int(env, "SCSSQ_METRICS_PORT", DEFAULT_METRICS_PORT, 0),
            work_dir=_work_dir(env),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules: the broker must not redeliver a task still running."""
        longest = self.compile_timeout + self.lock_ttl * 2
        if self.visibility_timeout <= longest:
            raise ConfigError(
                f"SCSSQ_VISIBILITY_TIMEOUT={self.visibility_timeout} must exceed the longest "
                f"task ({longest:g} s = SCSSQ_COMPILE_TIMEOUT + 2 x SCSSQ_LOCK_TTL), else Redis "
                "redelivers tasks that are still running"
            )

    def check_work_dir(self) -> None:
        """Worker start: the bundle folder must be a writable directory (ConfigError)."""
        if not self.work_dir:
            return
        if not os.path.isdir(self.work_dir) or not os.access(self.work_dir, os.W_OK | os.X_OK):
            raise ConfigError(
                f"SCSSQ_WORK_DIR={self.work_dir!r} is not a writable directory; create it "
                "(e.g. a tmpfs mount) or unset it to use the system's temp folder"
            )

    @property
    def lock_ttl_ms(self) -> int:
        return max(1, int(self.lock_ttl * 1000))


def _work_dir(env: Mapping[str, str]) -> str:
    value = env_str(env, "SCSSQ_WORK_DIR", DEFAULT_WORK_DIR)
    if value and not os.path.isabs(value):
        raise ConfigError(f"SCSSQ_WORK_DIR={value!r}: give an absolute path (or leave it unset)")
    return value
