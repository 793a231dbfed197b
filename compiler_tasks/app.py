"""The Celery application of the scssq fleet.

Start workers with ``celery -A compiler_tasks.app worker`` (or ``-A compiler_tasks``,
which finds this app through :mod:`compiler_tasks.celery`); the settings come
from ``celeryconfig.py`` (itself reading ``SCSSQ_*`` variables). Importing this
module imports Celery, which no client module does: the client writes its task
messages itself (:mod:`compiler_tasks.protocol.messages`).
"""

from __future__ import annotations

from celery import Celery

from .observability import signals  # noqa: F401  (handlers: Sentry, metrics, task log lines)

app = Celery("scssq", include=["compiler_tasks.worker.tasks"])
app.config_from_object("celeryconfig")


def _add_worker_steps() -> None:
    from .worker.acks import SettleAcks
    from .worker.bootsteps import FleetHeartbeat
    from .worker.broker_patch import guard_collected_channels

    app.steps["consumer"].add(FleetHeartbeat)
    app.steps["consumer"].add(SettleAcks)
    guard_collected_channels()  # a broker failover must not end the worker


_add_worker_steps()
