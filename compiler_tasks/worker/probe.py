"""Kubernetes probes for a worker, cheap enough to run every 10 s.

``python -m compiler_tasks.worker.probe live``: exit 0 while the worker's heartbeat
file (touched from the Celery consumer's own timer, see
``worker.bootsteps.FleetHeartbeat``) is younger than ``SCSSQ_LIVENESS_MAX_AGE``. It goes
stale when the worker is frozen, or when its consumer stopped (lost the broker
and did not come back), so the orchestrator restarts it. It imports neither
Celery nor the app, and never touches the broker.

``python -m compiler_tasks.worker.probe ready``: live, and Redis answers a PING.
Exit codes: 0 ok, 1 failed (the reason is printed), 2 bad configuration.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import ConfigError
from ..settings import Settings


def heartbeat_age(path: str) -> float | None:
    """Seconds since the heartbeat file was touched, or None if it does not exist."""
    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def touch(path: str) -> None:
    """Mark the worker alive now (creates the file if needed)."""
    with open(path, "a"):
        os.utime(path, None)


def live(settings: Settings) -> str | None:
    """None when alive, else why not."""
    age = heartbeat_age(settings.heartbeat_file)
    if age is None:
        return f"no heartbeat file at {settings.heartbeat_file} (worker not started?)"
    if age > settings.liveness_max_age:
        return (
            f"heartbeat {age:.0f} s old (> SCSSQ_LIVENESS_MAX_AGE={settings.liveness_max_age:g}):"
            " the worker's consumer is frozen or stopped"
        )
    return None


def ready(settings: Settings) -> str | None:
    """None when ready to take work, else why not."""
    problem = live(settings)
    if problem:
        return problem
    import redis

    from ..coordination.connections import redis_client

    try:  # the URL's Redis, or the master the Sentinels name; verified TLS either way
        redis_client(settings, "scssq-probe", timeout=2).ping()
    except redis.RedisError as e:
        return f"Redis at {settings.redis_shown} unreachable: {e}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["live"], ["ready"]):
        print("usage: python -m compiler_tasks.worker.probe live|ready", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    problem = live(settings) if args == ["live"] else ready(settings)
    print(problem or "ok")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
