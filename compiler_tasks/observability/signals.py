"""Celery signal handlers that wire Sentry, metrics and the task log line into a worker.

Imported by :mod:`compiler_tasks.app`, so the handlers are connected before
``celery worker`` sends its first signal; in any other process (the client,
Flower) they never fire and import nothing heavy.

* ``celeryd_init`` (worker main process, before the pool forks): Sentry on
  when ``SENTRY_DSN`` is set; multiprocess metrics and their HTTP server when
  ``SCSSQ_METRICS_PORT`` is set.
* ``task_prerun`` / ``task_postrun`` (pool process, inside the task's Sentry
  transaction): open the task's record, tag the transaction with the job's
  commit, key, engine and project; at the end tag the outcome, count it,
  capture a lost lock or poison message, and write the task's log line.

The task code calls :func:`span` around its steps, :func:`lock_acquired` after
taking a lock and :func:`capture_fault` when it gives up on an
infrastructure failure.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from ..settings import Settings
from . import logs, metrics, sentry

#: Task whose outcomes are counted in ``scssq_compiles_total``.
COMPILE_TASK = "scssq.compile"
#: Message header of a deferred re-check: when (epoch seconds) it found the lock taken.
DEFERRED_AT = "scssq_deferred_at"
#: Outcomes that are infrastructure faults worth a Sentry event even without an exception.
_FAULT_OUTCOMES = {
    "lost": "the compile's lock was lost before it completed (paused or partitioned holder)",
    "poison": "a compile message killed its worker repeatedly and was given up",
}

span = sentry.span
capture_fault = sentry.capture_fault


@signals.celeryd_init.connect
def _on_worker_init(**_: Any) -> None:
    settings = Settings.from_env()
    sentry.init_sentry("worker", settings)
    if metrics.prepare(settings):
        metrics.serve(settings)


@signals.worker_process_init.connect
def _on_pool_process_init(**_: Any) -> None:
    metrics.init_process()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    metrics.cleanup()


def _text(value: Any, limit: int = 100) -> str | None:
    return None if value is None else str(value)[:limit]


def job_fields(request: Any) -> dict[str, Any]:
    """The small, safe facts of a compile request for tags and logs (never the bundle)."""
    if not isinstance(request, dict):
        return {}
    options = request.get("options")
    options = options if isinstance(options, dict) else {}
    fields = {
        "key": _text(request.get("key")),
        "commit": _text(request.get("commit")),
        "project": _text(request.get("project")),
        "engine": _text(options.get("engine")),
        "submit": _text(request.get("submit")),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _header(request: Any, name: str) -> Any:
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


@signals.task_prerun.connect
def _on_task_start(task_id: str, task: Any, kwargs: Any = None, **_: Any) -> None:
    request = task.request
    fields = job_fields((kwargs or {}).get("request"))
    record = logs.TaskRecord(
        task=str(task.name),
        task_id=str(task_id),
        worker=str(getattr(request, "hostname", "") or ""),
        retries=int(getattr(request, "retries", 0) or 0),
        fields=fields,
    )
    if (getattr(request, "delivery_info", None) or {}).get("redelivered"):
        record.fields["redelivered"] = True
    logs.begin(record)
    sentry.set_tags(**fields)
    # A retry may inherit its message's headers: only a fresh re-check waited.
    deferred_at = _header(request, DEFERRED_AT) if record.retries == 0 else None
    if deferred_at is not None:
        record.fields["deferred"] = True
        try:
            sentry.past_span("lock.wait", float(deferred_at))
        except (TypeError, ValueError):
            pass


def lock_acquired(acquired: bool) -> None:
    """After a lock attempt: count a takeover (a re-check or redelivery that got it)."""
    record = logs.current()
    if not acquired or record is None:
        return
    if record.fields.get("deferred") or record.fields.get("redelivered"):
        record.fields["takeover"] = True
        metrics.lock_takeover()


def _outcome(retval: Any, state: Any) -> tuple[str, str | None]:
    if state == "SUCCESS" and isinstance(retval, str):
        return retval, None
    if state == "RETRY":
        cause = getattr(retval, "exc", None) or retval
        return "retry", f"{type(cause).__name__}: {cause}"
    if isinstance(retval, BaseException):
        return "exception", f"{type(retval).__name__}: {retval}"
    return str(state or "unknown").lower(), None


@signals.task_postrun.connect
def _on_task_end(task: Any, retval: Any = None, state: Any = None, **_: Any) -> None:
    record = logs.current()
    if record is None:
        return
    try:
        outcome, error = _outcome(retval, state)
        sentry.set_outcome(outcome)
        if outcome in _FAULT_OUTCOMES:
            sentry.capture_fault(None, _FAULT_OUTCOMES[outcome], **record.fields)
        if record.task == COMPILE_TASK:
            metrics.task_done(
                record.fields.get("engine", "unknown"),
                outcome,
                record.durations.get("scss.compile"),
                record.durations.get("lock.wait"),
            )
        logs.write(record.line(outcome, error))
    finally:
        logs.end()
