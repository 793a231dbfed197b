"""Sentry for scssq: set-up from the environment, spans, attributes, fault capture.

Sentry is on when ``SENTRY_DSN`` is set, in the worker (from the
``celeryd_init`` signal, see :mod:`compiler_tasks.observability.signals`) and in the
client (:func:`traced_submit`). Without it nothing here imports ``sentry_sdk``
and every helper is a cheap no-op, so the client's cache-hit path stays free of
it. The SDK is sentry-sdk 3.x: every span is streamed to Sentry as it ends (no
transactions).

One ``scssq submit`` is one trace: the client's root span ``scssq submit``
(op ``scssq.submit``; children ``compile.wait`` or ``lock.wait`` while it waits for
the fleet, and one ``queue.publish`` span, :func:`publish_span`, for each
``scssq.compile`` or ``scssq.record`` task it pushes) and, continued through the task
message's headers by ``CeleryIntegration``, the worker's root span ``scssq.compile``
(children ``lock.acquire``, ``scss.compile``, ``artifact.upload``; ``lock.wait``
in a deferred task's re-check, carrying ``scssq.waited_s``). Every span carries
the attributes ``commit``, ``key``, ``engine``, ``project`` and, on the root
spans, ``outcome``; error events carry the same values as tags.

What never reaches Sentry: sources, task arguments, local variables, Redis
command arguments, personal data. The 3.x options that guarantee it are in
:data:`DATA_COLLECTION` (no frame variables, no queue message bodies, no user,
cookies, headers, bodies or URL query strings); no Redis integration is enabled
(``auto_enabling_integrations=False``); :func:`scrub_event`,
:func:`scrub_span` and :func:`scrub_breadcrumb` remove what is left (task
arguments, the process's command line, engine stderr, credentials in messages).
User compile errors are counted, never captured; infrastructure faults are
captured once with the compile's context (:func:`capture_fault`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from .. import __version__
from ..errors import CompileError, CompileTimeout, InfrastructureError, ScssqError
from ..settings import Settings
from . import logs

R = TypeVar("R")

#: Release reported with every event and span.
RELEASE = f"scssq@{__version__}"
#: Seconds the client waits for Sentry to accept its events before it exits.
CLIENT_FLUSH_TIMEOUT = 5.0
#: Keys of Celery's event extra ("celery-job") that hold the task arguments.
_TASK_ARGUMENTS = ("args", "kwargs")
#: Span attributes never sent: the process's command line (paths, a commit).
_SPAN_ATTRIBUTES_DROPPED = ("process.command_args", "url.query", "http.query")
#: sentry-sdk 3's data collection: nothing about users or requests, no frame
#: variables, no queue message bodies (Celery task arguments hold the bundle).
DATA_COLLECTION: dict[str, Any] = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "off"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},  # a presigned URL's signature
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
    "gen_ai": {"inputs": False, "outputs": False},
    "mcp": {"inputs": False, "outputs": False},
}
#: Outcomes that mark the root span as failed (infrastructure, not the user's sources).
FAILED_OUTCOMES = frozenset({"failed", "poison", "lost"})

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
    try:
        import sentry_sdk
    except ImportError:  # the client without the extra: tracing is not worth failing a job
        print(
            "scssq: SENTRY_DSN is set but sentry-sdk is not installed: not tracing "
            "(pip install 'scssq[sentry]')",
            file=sys.stderr,
        )
        return False
    from sentry_sdk.integrations.logging import LoggingIntegration

    integrations: list[Any] = [
        # Log lines become breadcrumbs only: never events (faults are
        # captured on purpose) nor Sentry logs.
        LoggingIntegration(level=None, event_level=None, breadcrumb_level=logging.INFO),
    ]
    if component != "client":  # the client writes its task messages itself (trace_headers)
        from sentry_sdk.integrations.celery import CeleryIntegration

        integrations.append(CeleryIntegration(propagate_traces=True))

    sentry_sdk.init(
        dsn=dsn,
        environment=(env.get("SENTRY_ENVIRONMENT") or "").strip() or "production",
        release=RELEASE,
        traces_sample_rate=settings.traces_sample_rate,
        data_collection=DATA_COLLECTION,  # type: ignore[arg-type]
        max_request_body_size="never",
        # Only what is listed: the Redis integration would record command
        # arguments (bundles, manifests), the others add nothing here.
        auto_enabling_integrations=False,
        integrations=integrations,
        before_send=scrub_event,
        before_send_span=scrub_span,
        before_breadcrumb=scrub_breadcrumb,
    )
    sentry_sdk.set_tag("component", component)
    sentry_sdk.set_attribute("component", component)
    _enabled = True
    return True


def scrub_event(event: Any, hint: Any) -> Any:
    """Remove task arguments (the inline bundle), the command line and request bodies,
    redact secrets."""
    extra = event.get("extra") or {}
    extra.pop("sys.argv", None)  # the command line: paths, a commit
    job = extra.get("celery-job")
    if isinstance(job, dict):
        for name in _TASK_ARGUMENTS:
            job.pop(name, None)
    event.pop("request", None)
    for exc in (event.get("exception") or {}).get("values", []):
        if isinstance(exc.get("value"), str):
            exc["value"] = logs.redact(exc["value"])  # a password in a URL, an AWS secret
    for crumb in (event.get("breadcrumbs") or {}).get("values", []):
        scrub_breadcrumb(crumb, {})
    return event


def scrub_span(span: Any, hint: Any) -> Any:
    """Drop the command line and query strings from a span's attributes."""
    attributes = span.get("attributes")
    if isinstance(attributes, dict):
        for name in _SPAN_ATTRIBUTES_DROPPED:
            attributes.pop(name, None)
        full = attributes.get("url.full")
        if isinstance(full, str) and "?" in full:
            attributes["url.full"] = full.split("?", 1)[0]
    return span


def scrub_breadcrumb(crumb: Any, hint: Any) -> Any:
    """Keep breadcrumbs short and free of engine output (it may echo sources)."""
    message = crumb.get("message")
    if isinstance(message, str):
        cut = message.find("; stderr:")
        if cut >= 0:
            message = message[:cut] + "; stderr: [removed]"
        crumb["message"] = logs.redact(message)[: logs.MAX_ERROR_CHARS]
    data = crumb.get("data")
    if isinstance(data, dict):
        data.pop("args", None)
        for name in ("http.query", "url.query"):
            data.pop(name, None)  # a presigned URL's signature (presigned.py)
        full = data.get("url.full") or data.get("url")
        if isinstance(full, str) and "?" in full:
            data["url.full" if "url.full" in data else "url"] = full.split("?", 1)[0]
    return crumb


def set_tags(**tags: Any) -> None:
    """Tag the scope: a tag on its events, an attribute on its spans."""
    if not _enabled:
        return
    import sentry_sdk

    for name, value in tags.items():
        if value is not None:
            sentry_sdk.set_tag(name, str(value))
            sentry_sdk.set_attribute(name, str(value))


@contextmanager
def span(op: str, **tags: Any) -> Iterator[None]:
    """A timed step: a Sentry span (when on) and a duration in the task's log line."""
    started = time.monotonic()
    try:
        if _enabled:
            import sentry_sdk

            set_tags(**tags)
            attributes = {"sentry.op": op, **{k: str(v) for k, v in tags.items()}}
            with sentry_sdk.start_span(name=op, attributes=attributes):
                yield
        else:
            yield
    finally:
        record = logs.current()
        if record is not None:
            record.add(op, time.monotonic() - started)


@contextmanager
def publish_span(task: str) -> Iterator[None]:
    """The client's enqueue of ``task``, a ``queue.publish`` span as sentry-sdk's Celery
    integration records one: task headers written inside it (:func:`trace_headers`)
    make the worker's span its child."""
    if not _enabled:
        yield
        return
    import sentry_sdk

    with sentry_sdk.start_span(name=task, attributes={"sentry.op": "queue.publish"}):
        yield


def trace_headers() -> dict[str, Any]:
    """Task message headers that continue the current trace in the worker, written as
    sentry-sdk's Celery integration writes them (also nested under ``headers``, which
    is where a worker reads them); {} when Sentry is off."""
    if not _enabled:
        return {}
    import sentry_sdk

    found = {"sentry-trace": sentry_sdk.get_traceparent(), "baggage": sentry_sdk.get_baggage()}
    headers = {k: v for k, v in found.items() if v}
    return {**headers, "headers": dict(headers)} if headers else {}


def past_span(op: str, since: float, **tags: Any) -> None:
    """A step that began at wall-clock time ``since`` and ends now (e.g. a deferral).

    sentry-sdk 3 starts a span now, so the span carries the time waited in
    ``scssq.waited_s``; the task's log line and metrics get it as a duration.
    """
    seconds = max(0.0, time.time() - since)
    record = logs.current()
    if record is not None:
        record.add(op, seconds)
    if not _enabled:
        return
    import sentry_sdk

    attributes: dict[str, Any] = {"sentry.op": op, "scssq.waited_s": round(seconds, 6)}
    attributes.update({k: str(v) for k, v in tags.items()})
    with sentry_sdk.start_span(name=op, attributes=attributes):
        pass


def capture_fault(error: BaseException | None, message: str = "", **context: Any) -> None:
    """Send one infrastructure fault of the running task to Sentry, with its context."""
    record = logs.current()
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
            sentry_sdk.capture_message(logs.redact(message), level="error")


def set_outcome(outcome: str) -> None:
    """Tag the outcome; mark the running span failed for an infrastructure failure.

    Called from ``task_postrun``, where the running span is the task's root span.
    """
    if not _enabled:
        return
    import sentry_sdk

    set_tags(outcome=outcome)
    current = sentry_sdk.get_current_span()
    if current is not None and outcome in FAILED_OUTCOMES:
        current.status = "error"


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
    """``submit`` run inside the client's root span, flushed before returning.

    Without ``SENTRY_DSN`` it returns ``submit`` itself (nothing is imported).
    """
    if not init_sentry("client", settings):
        return submit

    @functools.wraps(submit)
    def run(client: Any, config: Any, commit: str, *args: Any, **kwargs: Any) -> R:
        import sentry_sdk

        error: BaseException | None = None
        try:
            with sentry_sdk.start_span(
                name="scssq submit", attributes={"sentry.op": "scssq.submit"}
            ) as root:
                set_tags(
                    commit=commit,
                    project=getattr(config, "project", None),
                    engine=getattr(getattr(config, "options", None), "engine", None),
                )
                try:
                    result = submit(client, config, commit, *args, **kwargs)
                except BaseException as e:  # re-raised below, once the root span ended
                    error = e
                    outcome = _client_outcome(e)
                    set_tags(outcome=outcome, error=type(e).__name__)
                    # The user's compile error is a correct answer of the service: status ok.
                    root.status = "error" if outcome in FAILED_OUTCOMES else "ok"
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
