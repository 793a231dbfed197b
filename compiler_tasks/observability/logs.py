"""One structured log line per task, and the per-task record that feeds it.

A :class:`TaskRecord` lives while a task runs (a context variable, set by the
Celery signal handlers in :mod:`compiler_tasks.observability.signals`). The spans of
:func:`compiler_tasks.observability.sentry.span` add their durations to it, and when
the task ends one JSON object is written on its own line to the worker's
original stderr (not through Celery's log prefix, so a log shipper can parse
each line as it is)::

    {"event": "scssq.task", "task": "scssq.compile", "outcome": "compiled",
     "key": "…", "commit": "…", "project": "…", "engine": "libsass",
     "lock_wait_s": 0.0, "lock_acquire_s": 0.001, "compile_s": 0.083,
     "upload_s": 0.004, "total_s": 0.101, ...}

Never in the line: sources, bundle bytes, or credentials. Error text is passed
through :func:`redact` (passwords in URLs, AWS secrets) and shortened.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

#: Name of the logger of the task lines (its handler writes bare JSON lines).
LOGGER = "scssq.task"
#: Longest error text kept in a task line.
MAX_ERROR_CHARS = 500
#: Span names whose durations the line reports, and the field each one fills.
TIMED = {
    "lock.wait": "lock_wait_s",
    "lock.acquire": "lock_acquire_s",
    "scss.compile": "compile_s",
    "artifact.upload": "upload_s",
}

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]+@", re.I)
_AWS_SECRET = re.compile(
    r"(?P<name>aws_secret_access_key|aws_session_token|x-amz-security-token|signature)"
    r"(?P<sep>[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,;]+",
    re.I,
)


def redact(text: str) -> str:
    """``text`` with passwords in URLs and AWS secrets replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _AWS_SECRET.sub(lambda m: f"{m['name']}{m['sep']}***", text)


@dataclass
class TaskRecord:
    """What one task did, collected while it runs."""

    task: str
    task_id: str
    worker: str
    retries: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: Set once a fault of this task was sent to Sentry (never twice).
    captured: bool = False

    def add(self, name: str, seconds: float) -> None:
        self.durations[name] = self.durations.get(name, 0.0) + seconds

    def line(self, outcome: str, error: str | None = None) -> dict[str, Any]:
        """The log object of this task, ending now with ``outcome``."""
        out: dict[str, Any] = {
            "event": LOGGER,
            "task": self.task,
            "id": self.task_id,
            "worker": self.worker,
            "outcome": outcome,
            "retries": self.retries,
            **self.fields,
        }
        for span_name, key in TIMED.items():
            out[key] = round(self.durations.get(span_name, 0.0), 4)
        out["total_s"] = round(time.monotonic() - self.started, 4)
        if error:
            out["error"] = redact(error)[:MAX_ERROR_CHARS]
        return out


_current: contextvars.ContextVar[TaskRecord | None] = contextvars.ContextVar(
    "scssq_task_record", default=None
)


def current() -> TaskRecord | None:
    """The record of the task running in this context, if any."""
    return _current.get()


def begin(record: TaskRecord) -> None:
    _current.set(record)


def end() -> TaskRecord | None:
    record = _current.get()
    _current.set(None)
    return record


class _JsonLines(logging.Handler):
    """Writes each record's message (already JSON) as one line to the original stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.__stderr__
        if stream is None:
            return
        try:
            stream.write(record.getMessage() + "\n")
            stream.flush()
        except (OSError, ValueError):
            self.handleError(record)


def logger() -> logging.Logger:
    """The task-line logger, with its bare-JSON handler installed once."""
    log = logging.getLogger(LOGGER)
    if not any(isinstance(h, _JsonLines) for h in log.handlers):
        log.addHandler(_JsonLines())
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def write(line: dict[str, Any]) -> None:
    """Log one task line."""
    logger().info(json.dumps(line, separators=(", ", ": "), default=str))
