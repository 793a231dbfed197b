"""Sentry for scssq: set-up from the environment, spans, tags, fault capture.

Sentry is on when ``SENTRY_DSN`` is set, in the worker (from the
``celeryd_init`` signal, see :mod:`compiler_tasks.instrument`) and in the
client (:func:`traced_submit`). Without it nothing here imports ``sentry_sdk``
and every helper is a cheap no-op, so the client's cache-hit path stays free of
it.

One ``scssq submit`` is one trace: the client's transaction ``scssq submit``
(spans: ``lock.wait`` while it waits for the fleet, Celery's enqueue span) and,
continued through the task message's headers by ``CeleryIntegration``, the
worker's ``scssq.compile`` transaction (spans ``lock.acquire``,
``scss.compile``, ``artifact.upload``; ``lock.wait`` in a deferred task's
re-check, covering the time since it found the lock taken). Both carry the
tags ``commit``, ``key``, ``engine``, ``project`` and ``outcome``.

What never reaches Sentry: sources. ``include_local_variables`` is off (a frame
holding the bundle would ship it), task arguments are removed from events
(:func:`scrub_event`), no Redis integration records commands (their arguments
carry bundles and manifests), breadcrumbs keep no engine stderr. User compile
errors are tagged and counted, never captured; infrastructure faults are
captured once with the compile's context (:func:`capture_fault`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from . import __version__, tasklog
from .errors import CompileError, CompileTimeout, InfrastructureError, ScssqError
from .settings import Settings

R = TypeVar("R")

#: Release reported with every event and transaction.
RELEASE = f"scssq@{__version__}"
#: Seconds the client waits for Sentry to accept its events before it exits.
CLIENT_FLUSH_TIMEOUT = 5.0
#: Keys of Celery's event extra ("celery-job") that hold the task arguments.
_TASK_ARGUMENTS = ("args", "kwargs")

_enabled = False


def enabled() -> bool:
    """Whether Sentry was initialised in this process."""
    return _enabled


def init_sentry(component: str, settings: Settings, env: Mapping[str, str] | None = None) -> bool:
    """Initialise sentry-sdk when ``SENTRY_DSN`` is set; True if it is now on."""
    global _enabled
    env = os.environ if env is None else env
    dsn = (env.get("SENTRY_DSN") or "").strip()
    if not dsn:
        return False
    if _enabled:
        return True
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=(env.get("SENTRY_ENVIRONMENT") or "").strip() or "production",
        release=RELEASE,
        traces_sample_rate=settings.traces_sample_rate,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        # Only what is listed: the Redis integration would record command
        # arguments (bundles, manifests), the others add nothing here.
        auto_enabling_integrations=False,
        integrations=[
            CeleryIntegration(propagate_traces=True),
            # Log lines become breadcrumbs, never events: faults are captured on purpose.
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )
    sentry_sdk.set_tag("component", component)
    _enabled = True
    return True


def scrub_event(event: Any, hint: Any) -> Any:
    """Remove task arguments (the inline bundle) and request bodies, redact secrets."""
    job = (event.get("extra") or {}).get("celery-job")
    if isinstance(job, dict):
        for name in _TASK_ARGUMENTS:
            job.pop(name, None)
    event.pop("request", None)
    for exc in (event.get("exception") or {}).get("values", []):
        if isinstance(exc.get("value"), str):
            exc["value"] = tasklog.redact(exc["value"])  # a password in a URL, an AWS secret
    for crumb in (event.get("breadcrumbs") or {}).get("values", []):
        scrub_breadcrumb(crumb, {})
    for span in event.get("spans") or []:
        if isinstance(span, dict) and isinstance(span.get("data"), dict):
            span["data"].pop("http.query", None)  # a presigned URL's signature (presigned.py)
    return event


def scrub_breadcrumb(crumb: Any, hint: Any) -> Any:
    """Keep breadcrumbs short and free of engine output (it may echo sources)."""
    message = crumb.get("message")
    if isinstance(message, str):
        cut = message.find("; stderr:")
        if cut >= 0:
            message = message[:cut] + "; stderr: [removed]"
        crumb["message"] = tasklog.redact(message)[: tasklog.MAX_ERROR_CHARS]
    data = crumb.get("data")
    if isinstance(data, dict):
        data.pop("args", None)
        data.pop("http.query", None)  # a presigned URL's signature (presigned.py)
    return crumb


def set_tags(**tags: Any) -> None:
    """Tag the current scope (the task's or the submit's transaction and its events)."""
    if not _enabled:
        return
    import sentry_sdk

    for name, value in tags.items():
        if value is not None:
            sentry_sdk.set_tag(name, str(value))


@contextmanager
def span(op: str, **tags: Any) -> Iterator[None]:
    """A timed step: a Sentry span (when on) and a duration in the task's log line."""
    started = time.monotonic()
    try:
        if _enabled:
            import sentry_sdk

            set_tags(**tags)
            with sentry_sdk.start_span(op=op, name=op) as s:
                for name, value in tags.items():
                    s.set_tag(name, str(value))
                yield
        else:
            yield
    finally:
        record = tasklog.current()
        if record is not None:
            record.add(op, time.monotonic() - started)


def past_span(op: str, since: float, **tags: Any) -> None:
    """A span that began at wall-clock time ``since`` and ends now (e.g. a deferral)."""
    seconds = max(0.0, time.time() - since)
    record = tasklog.current()
    if record is not None:
        record.add(op, seconds)
    if not _enabled:
        return
    from datetime import UTC, datetime

    import sentry_sdk

    with sentry_sdk.start_span(
        op=op, name=op, start_timestamp=datetime.fromtimestamp(since, UTC)
    ) as s:
        for name, value in tags.items():
            s.set_tag(name, str(value))


def capture_fault(error: BaseException | None, message: str = "", **context: Any) -> None:
    """Send one infrastructure fault of the running task to Sentry, with its context."""
    record = tasklog.current()
    if record is not None:
        if record.captured:
            return
        record.captured = True
        context = {**record.fields, "task": record.task, "retries": record.retries, **context}
    if not _enabled:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_context("compile", {k: v for k, v in context.items() if v is not None})
        scope.set_tag("fault", type(error).__name__ if error is not None else "message")
        if error is not None:
            sentry_sdk.capture_exception(error)
        else:
            sentry_sdk.capture_message(tasklog.redact(message), level="error")


def set_outcome(outcome: str) -> None:
    """Tag the outcome and mark the transaction failed for an infrastructure failure."""
    if not _enabled:
        return
    import sentry_sdk

    sentry_sdk.set_tag("outcome", outcome)
    span_now = sentry_sdk.get_current_span()
    if span_now is not None and outcome in ("failed", "poison", "lost"):
        span_now.containing_transaction.set_status("internal_error")  # type: ignore[union-attr]


def _client_outcome(error: BaseException) -> str:
    if isinstance(error, CompileTimeout):
        return "timeout"
    if isinstance(error, CompileError):
        return "compile-error"
    return "failed"


def _client_should_capture(error: BaseException) -> bool:
    """Faults the client met itself: not the user's, not one a worker already reported."""
    if isinstance(error, CompileError):
        return False  # the user's sources (or their time limit): counted, not captured
    if isinstance(error, InfrastructureError):
        # A worker's failure relayed to the client arrives as the base class; the
        # worker captured it in this same trace. Subclasses happened here.
        return type(error) is not InfrastructureError
    return not isinstance(error, ScssqError)  # unexpected: a bug


def traced_submit(submit: Callable[..., R], settings: Settings) -> Callable[..., R]:
    """``submit`` run inside the client's Sentry transaction, flushed before returning.

    Without ``SENTRY_DSN`` it returns ``submit`` itself (nothing is imported).
    """
    if not init_sentry("client", settings):
        return submit

    @functools.wraps(submit)
    def run(client: Any, config: Any, commit: str, *args: Any, **kwargs: Any) -> R:
        import sentry_sdk

        error: BaseException | None = None
        try:
            with sentry_sdk.start_transaction(op="scssq.submit", name="scssq submit") as tx:
                set_tags(
                    commit=commit,
                    project=getattr(config, "project", None),
                    engine=getattr(getattr(config, "options", None), "engine", None),
                )
                try:
                    result = submit(client, config, commit, *args, **kwargs)
                except BaseException as e:  # re-raised below, once the transaction ended
                    error = e
                    outcome = _client_outcome(e)
                    set_tags(outcome=outcome, error=type(e).__name__)
                    # The user's compile error is a correct answer of the service: status ok.
                    tx.set_status("internal_error" if outcome == "failed" else "ok")
                    if _client_should_capture(e):
                        sentry_sdk.capture_exception(e)
                else:
                    set_tags(
                        outcome=getattr(result, "outcome", None), key=getattr(result, "key", None)
                    )
        finally:
            sentry_sdk.flush(timeout=CLIENT_FLUSH_TIMEOUT)
        if error is not None:
            raise error
        return result

    return run
