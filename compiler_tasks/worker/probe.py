"""Kubernetes probes for a worker, cheap enough to run every 10 s.

``python -m compiler_tasks.worker.probe live``: exit 0 while the worker's heartbeat
file (touched from the Celery consumer's own timer, see
``worker.bootsteps.FleetHeartbeat``) is younger than ``SCSSQ_LIVENESS_MAX_AGE``. It goes
stale when the worker is frozen, or when its consumer stopped (lost the broker
and did not come back), so the orchestrator restarts it. It imports neither
Celery nor the app, and never touches the broker.

``python -m compiler_tasks.worker.probe ready``: live, and Redis answers a PING.
Exit codes: 0 ok, 1 failed (the reason is printed), 2 bad configuration.

Each worker has its own file: ``{node}`` in ``SCSSQ_HEARTBEAT_FILE`` (the default has it)
becomes the worker's node name (:func:`heartbeat_path`). The probe takes the node name
as a second argument (``probe live w1@host``); without one it reads the only heartbeat
file there is (one worker per container or pod) and fails when there are several.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import time

from ..errors import ConfigError
from ..settings import Settings

NODE = "{node}"
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9@._-]")


def heartbeat_path(template: str, node: str) -> str:
    """``SCSSQ_HEARTBEAT_FILE`` for the worker named ``node`` (``{node}`` replaced by
    the name, any character but letters, digits and ``@._-`` by ``_``)."""
    return template.replace(NODE, _UNSAFE_RE.sub("_", node) or "_")


def _find(template: str, node: str | None) -> tuple[str | None, str | None]:
    """(heartbeat file, None) for ``node``, or (None, why not) when there is no node
    name and not exactly one file."""
    if node is not None or NODE not in template:
        return heartbeat_path(template, node or ""), None
    found = sorted(glob.glob(glob.escape(template).replace(glob.escape(NODE), "*")))
    if len(found) == 1:
        return found[0], None
    if not found:
        return None, f"no heartbeat file matches {template} (worker not started?)"
    return None, (
        f"{len(found)} heartbeat files match {template} ({', '.join(found)}): pass the "
        "worker's node name, e.g. `python -m compiler_tasks.worker.probe live w1@host`"
    )


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


def live(settings: Settings, node: str | None = None) -> str | None:
    """None when the worker ``node`` (else the only one) is alive, else why not."""
    path, problem = _find(settings.heartbeat_file, node)
    if path is None:
        return problem
    age = heartbeat_age(path)
    if age is None:
        return f"no heartbeat file at {path} (worker not started?)"
    if age > settings.liveness_max_age:
        return (
            f"heartbeat {age:.0f} s old (> SCSSQ_LIVENESS_MAX_AGE={settings.liveness_max_age:g}):"
            " the worker's consumer is frozen or stopped"
        )
    return None


def ready(settings: Settings, node: str | None = None) -> str | None:
    """None when ready to take work, else why not."""
    problem = live(settings, node)
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
    if not 1 <= len(args) <= 2 or args[0] not in ("live", "ready"):
        print("usage: python -m compiler_tasks.worker.probe live|ready [NODE]", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    node = args[1] if len(args) == 2 else None
    problem = live(settings, node) if args[0] == "live" else ready(settings, node)
    print(problem or "ok")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
