"""The one typed settings object of scssq, read from ``SCSSQ_*`` variables.

Each setting is declared once, as a field of :class:`Settings` (the Redis and Sentinel
rows in its base, :class:`~compiler_tasks.settings_redis.RedisSettings`): its variable, type,
default, bounds and help in one :func:`~compiler_tasks.envvars.setting` call. That table
drives :meth:`Settings.from_env`, ``docs/configuration.md`` and the comments of
``.env.example`` (rendered by :mod:`compiler_tasks.settings_docs`, checked by a test).
The client's own variables, read in ``cli/config.py``, are rows of :data:`CLIENT_SETTINGS`.
A value scssq cannot use fails at once with :class:`~compiler_tasks.errors.ConfigError`
naming the variable, the value and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .envvars import (
    ABSOLUTE_PATH,
    CHOICE,
    FILE_PATH,
    INTEGER,
    NUMBER,
    RATE,
    STORE_URL,
    TEXT,
    Spec,
    redact_url,
    setting,
)
from .errors import ConfigError
from .settings_redis import RedisSettings

ENGINES = ("libsass", "dart-sass")

# The groups of the table, in the order the docs show them.
# (Redis's and Sentinel's groups come first, from RedisSettings.)
STORE = "Store and bundles"
ENGINE = "Engines"
DELIVERY = "Locks and delivery"
HEALTH = "Worker health"
OBSERVE = "Observability"
CLIENT = "Client (`scssq`)"


@dataclass(frozen=True)
class Settings(RedisSettings):
    """Everything configurable about scssq; build with :meth:`from_env`."""

    store_url: str = setting(
        "SCSSQ_STORE",
        "file://~/.local/share/scssq/store",
        "Where artifacts live: a local folder (no cloud) or an S3 bucket, with endpoint and "
        "credentials from the standard AWS chain (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …).",
        STORE_URL,
        STORE,
    )
    inline_bundle_max: int = setting(
        "SCSSQ_INLINE_BUNDLE_MAX",
        512 * 1024,
        "Bundles whose archive (compressed) is larger than this travel through the store "
        "instead of inside the task message.",
        INTEGER,
        STORE,
        unit="bytes",
    )
    max_bundle_bytes: int = setting(
        "SCSSQ_MAX_BUNDLE_BYTES",
        64 * 1024 * 1024,
        "Largest bundle accepted, counting the uncompressed size of its files.",
        INTEGER,
        STORE,
        minimum=1024,
        unit="bytes",
    )
    max_bundle_files: int = setting(
        "SCSSQ_MAX_BUNDLE_FILES", 20_000, "Most files a bundle may hold.", INTEGER, STORE, minimum=1
    )
    engine: str = setting(
        "SCSSQ_ENGINE",
        "libsass",
        "Engine used when a submit names none.",
        CHOICE,
        ENGINE,
        choices=ENGINES,
    )
    compile_timeout: float = setting(
        "SCSSQ_COMPILE_TIMEOUT",
        120.0,
        "Wall-clock limit for all engine work of one task.",
        NUMBER,
        ENGINE,
        minimum=0.1,
        unit="s",
    )
    engine_memory_mb: int = setting(
        "SCSSQ_ENGINE_MEMORY_MB",
        2048,
        "Address-space limit of an engine process.",
        INTEGER,
        ENGINE,
        minimum=64,
        unit="MiB",
    )
    max_output_bytes: int = setting(
        "SCSSQ_MAX_OUTPUT_BYTES",
        32 * 1024 * 1024,
        "Largest CSS (or source map) one entry may produce.",
        INTEGER,
        ENGINE,
        minimum=1024,
        unit="bytes",
    )
    max_message_bytes: int = setting(
        "SCSSQ_MAX_MESSAGE_BYTES",
        64 * 1024,
        "Largest warnings/debug text kept from one compile.",
        INTEGER,
        ENGINE,
        minimum=256,
        unit="bytes",
    )
    engine_max_compiles: int = setting(
        "SCSSQ_ENGINE_MAX_COMPILES",
        500,
        "Compiles a libsass engine process serves before it is replaced (bounds its memory).",
        INTEGER,
        ENGINE,
        minimum=1,
    )
    dart_max_compiles: int = setting(
        "SCSSQ_DART_MAX_COMPILES",
        1000,
        "Compiles one Dart Sass compiler process serves before it is replaced. The process is "
        "long-lived (no VM start per compile); replacing it bounds its memory. It is also "
        "replaced when it idles above half of `SCSSQ_ENGINE_MEMORY_MB`.",
        INTEGER,
        ENGINE,
        minimum=1,
    )
    work_dir: str = setting(
        "SCSSQ_WORK_DIR",
        "",
        "Folder a worker unpacks each bundle into for its engine (removed after the compile). "
        "A memory-backed folder (tmpfs) saves writing and removing every file of every bundle "
        "on disk; `deploy/` mounts one. Checked at worker start.",
        ABSOLUTE_PATH,
        ENGINE,
        shown="the system's temp folder (`TMPDIR` or `/tmp`)",
    )
    lock_ttl: float = setting(
        "SCSSQ_LOCK_TTL",
        30.0,
        "Lock time-to-live; holders renew it every third of it, and it caps each wait for "
        "another request's compile.",
        NUMBER,
        DELIVERY,
        minimum=0.3,
        unit="s",
    )
    task_retries: int = setting(
        "SCSSQ_TASK_RETRIES",
        3,
        "Retries of a task after an infrastructure failure (store, Redis, engine crash).",
        INTEGER,
        DELIVERY,
    )
    max_deliveries: int = setting(
        "SCSSQ_MAX_DELIVERIES",
        3,
        "Deliveries of one message before it is declared poison (its worker died each time).",
        INTEGER,
        DELIVERY,
        minimum=1,
    )
    visibility_timeout: int = setting(
        "SCSSQ_VISIBILITY_TIMEOUT",
        900,
        "Seconds an unacknowledged message waits before Redis redelivers it; must exceed "
        "the longest task (`SCSSQ_COMPILE_TIMEOUT` + 2 x `SCSSQ_LOCK_TTL`).",
        INTEGER,
        DELIVERY,
        minimum=1,
        unit="s",
    )
    worker_alive_window: float = setting(
        "SCSSQ_WORKER_ALIVE_WINDOW",
        30.0,
        "A worker stays listed as alive this long after its last heartbeat.",
        NUMBER,
        HEALTH,
        minimum=1.0,
        unit="s",
    )
    heartbeat_file: str = setting(
        "SCSSQ_HEARTBEAT_FILE",
        "/tmp/scssq-worker-heartbeat-{node}",
        "File a worker touches from its consumer's timer; `probe live` reads its age. `{node}` "
        "is the worker's node name (`-n w1@%h`): one file per worker on a host.",
        FILE_PATH,
        HEALTH,
    )
    liveness_max_age: float = setting(
        "SCSSQ_LIVENESS_MAX_AGE",
        30.0,
        "`python -m compiler_tasks.worker.probe live` fails when the heartbeat file is older.",
        NUMBER,
        HEALTH,
        minimum=1.0,
        unit="s",
    )
    traces_sample_rate: float = setting(
        "SCSSQ_TRACES_SAMPLE_RATE",
        0.1,
        "Share of submits traced in Sentry (when `SENTRY_DSN` is set): 0 none, 1 every one.",
        RATE,
        OBSERVE,
    )
    metrics_port: int = setting(
        "SCSSQ_METRICS_PORT",
        0,
        "Port of a worker's Prometheus endpoint (`/metrics`); 0 turns it off.",
        INTEGER,
        OBSERVE,
        shown="`0` (off)",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``SCSSQ_*`` variable; raise ConfigError naming a bad one."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            values[f.name] = f.metadata["spec"].read(env, values)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules: Sentinel's settings go together; the broker must not
        redeliver a task still running."""
        self.check_redis()
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


#: Every row of :class:`Settings` as (attribute, row), in declaration order.
SETTINGS: tuple[tuple[str, Spec], ...] = tuple(
    (f.name, f.metadata["spec"]) for f in fields(Settings)
)

#: The client's variables: ``cli.config.env_value`` reads each through its row.
CLIENT_SETTINGS: tuple[Spec, ...] = (
    Spec(
        "SCSSQ_SUBMIT_TIMEOUT",
        600.0,
        "Default `--timeout` of `scssq submit`: seconds a client waits for the fleet "
        "(queueing, compiling and downloading together).",
        NUMBER,
        CLIENT,
        minimum=0.1,
        unit="s",
    ),
    Spec(
        "SCSSQ_PROJECT",
        None,
        "Default `--project` of `scssq submit`, `status` and `fetch` (a project name).",
        TEXT,
        CLIENT,
        shown="the git top-level's name",
    ),
    Spec(
        "SCSSQ_FALLBACK",
        "none",
        "Default `--fallback` of `scssq submit`: `local` compiles on this machine when the "
        "fleet is unreachable or times out.",
        CHOICE,
        CLIENT,
        choices=("none", "local"),
    ),
)

# Defaults other modules import by name: read from the table, not declared again.
DEFAULT_PREFIX: str = Settings.prefix
DEFAULT_QUEUE: str = Settings.queue
DEFAULT_LOCK_TTL: float = Settings.lock_ttl
DEFAULT_DART_MAX_COMPILES: int = Settings.dart_max_compiles
DEFAULT_TRACES_SAMPLE_RATE: float = Settings.traces_sample_rate
DEFAULT_SUBMIT_TIMEOUT: float = CLIENT_SETTINGS[0].default

__all__ = ["CLIENT_SETTINGS", "ENGINES", "SETTINGS", "Settings", "redact_url"]
