"""The worker's Prometheus metrics, served on ``SCSSQ_METRICS_PORT`` (0: off).

Tasks run in Celery's prefork pool processes, but only the worker's main
process serves HTTP. The pool's numbers reach it through prometheus_client's
*multiprocess mode*: the main process creates a private directory and sets
``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is imported, every pool
process (forked later) writes its counters and histograms to memory-mapped
files there, and a scrape sums them. That keeps each observation a memory
write (no Redis round trip per task), keeps histograms real histograms, and
survives pool processes being replaced (their files stay and keep counting).
The directory is removed when the worker stops.

Fleet-wide numbers that no single worker sees are read from Redis at scrape
time (:class:`FleetCollector`): the submit outcomes clients count themselves
(``<prefix>:stats:*``, see :mod:`compiler_tasks.observability.stats`, including cache hits
that never reach a worker), the queue's length and the number of live
workers. Every worker exports the same values for these; aggregate them with
``max()``, not ``sum()``.

Worker metrics (summed over its pool processes):

* ``scssq_compiles_total{engine,outcome}``: compile tasks by outcome
  (compiled, compile-error, cached, deferred, shared, timeout, limit, lost, failed,
  poison, refused, retry).
* ``scssq_compile_duration_seconds{engine}``: engine time of a task's compile.
* ``scssq_lock_wait_seconds``: how long a deferred task waited for another
  holder before its re-check.
* ``scssq_lock_takeovers_total``: locks taken by a re-check or redelivery whose
  previous holder vanished without a result.
* ``scssq_lock_renewal_failures_total{reason}``: ``redis`` (a renewal call
  failed) or ``lost`` (the lock was no longer ours).
* ``scssq_store_request_duration_seconds{operation,status}``: store latency.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from ..settings import Settings

log = logging.getLogger(__name__)

#: Seconds buckets of the compile duration histogram.
COMPILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Seconds buckets of the lock wait histogram.
WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Seconds buckets of store request latency.
STORE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Reasons of ``scssq_lock_renewal_failures_total``.
RENEWAL_REASONS = ("redis", "lost")
#: Priority lists kombu's Redis transport keeps besides the queue itself.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: The multiprocess directory, set in the worker's main process and inherited by forks.
_dir: str | None = None
_metrics: Any = None
_metrics_pid = 0


def enabled() -> bool:
    """Whether this process records metrics (a worker with SCSSQ_METRICS_PORT set)."""
    return _dir is not None


def prepare(settings: Settings) -> bool:
    """In the worker's main process, before the pool forks: set up multiprocess mode."""
    global _dir
    if settings.metrics_port <= 0 or _dir is not None:
        return _dir is not None
    _dir = tempfile.mkdtemp(prefix="scssq-metrics-")
    os.environ[_MULTIPROC_ENV] = _dir
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # in case something imported it early
    return True


def serve(settings: Settings) -> None:
    """Start the /metrics HTTP server in this (the main) process; errors are logged."""
    if _dir is None:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_dir)
    registry.register(FleetCollector(settings))
    try:
        start_http_server(settings.metrics_port, registry=registry)
    except OSError as e:
        log.error("cannot serve metrics on port %d: %s", settings.metrics_port, e)
        return
    log.info("serving Prometheus metrics on port %d", settings.metrics_port)


def cleanup() -> None:
    """Remove the multiprocess directory (the worker stops)."""
    if _dir is not None:
        shutil.rmtree(_dir, ignore_errors=True)


@dataclasses.dataclass
class _Metrics:
    compiles: Any
    compile_seconds: Any
    lock_wait: Any
    takeovers: Any
    renewal_failures: Any
    store_seconds: Any


def _m() -> _Metrics | None:
    """This process's metric objects, created on first use (after the fork)."""
    global _metrics, _metrics_pid
    if _dir is None:
        return None
    if _metrics is None or _metrics_pid != os.getpid():
        from prometheus_client import Counter, Histogram

        _metrics = _Metrics(
            compiles=Counter(
                "scssq_compiles", "Compile tasks by engine and outcome", ["engine", "outcome"]
            ),
            compile_seconds=Histogram(
                "scssq_compile_duration_seconds",
                "Engine time of one compile task",
                ["engine"],
                buckets=COMPILE_BUCKETS,
            ),
            lock_wait=Histogram(
                "scssq_lock_wait_seconds",
                "Time a deferred task waited for another holder of its lock",
                buckets=WAIT_BUCKETS,
            ),
            takeovers=Counter(
                "scssq_lock_takeovers", "Locks taken after the previous holder vanished"
            ),
            renewal_failures=Counter(
                "scssq_lock_renewal_failures", "Failed lock renewals by reason", ["reason"]
            ),
            store_seconds=Histogram(
                "scssq_store_request_duration_seconds",
                "Artifact store requests by operation and status",
                ["operation", "status"],
                buckets=STORE_BUCKETS,
            ),
        )
        for reason in RENEWAL_REASONS:  # every series exists (at 0) before its first event
            _metrics.renewal_failures.labels(reason=reason)
        _metrics_pid = os.getpid()
    return _metrics


def init_process() -> None:
    """In a pool process just forked: create the metrics so a scrape shows them at 0."""
    _m()


def task_done(
    engine: str, outcome: str, compile_seconds: float | None, lock_wait: float | None
) -> None:
    """Count one finished compile task (and observe its durations)."""
    m = _m()
    if m is None:
        return
    m.compiles.labels(engine=engine, outcome=outcome).inc()
    if compile_seconds is not None:
        m.compile_seconds.labels(engine=engine).observe(compile_seconds)
    if lock_wait is not None:
        m.lock_wait.observe(lock_wait)


def lock_takeover() -> None:
    m = _m()
    if m is not None:
        m.takeovers.inc()


def renewal_failed(reason: str) -> None:
    """A lock renewal failed: ``redis`` (the call) or ``lost`` (not ours any more)."""
    m = _m()
    if m is not None:
        m.renewal_failures.labels(reason=reason).inc()


@contextlib.contextmanager
def _store_timer(operation: str) -> Iterator[None]:
    started = time.perf_counter()
    status = "error"
    try:
        yield
        status = "ok"
    finally:
        m = _m()
        if m is not None:
            m.store_seconds.labels(operation=operation, status=status).observe(
                time.perf_counter() - started
            )


class TimedStore:
    """A store whose every request is timed into ``scssq_store_request_duration_seconds``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.url = inner.url

    def put(self, path: str, data: bytes) -> None:
        with _store_timer("put"):
            self._inner.put(path, data)

    def put_once(self, path: str, data: bytes) -> bool:
        with _store_timer("put_once"):
            return bool(self._inner.put_once(path, data))

    def get(self, path: str, limit: int | None = None) -> bytes:
        with _store_timer("get"):
            return bytes(self._inner.get(path, limit=limit))

    def exists(self, path: str) -> bool:
        with _store_timer("exists"):
            return bool(self._inner.exists(path))

    def delete(self, path: str) -> None:
        with _store_timer("delete"):
            self._inner.delete(path)

    def check(self) -> str:
        with _store_timer("check"):
            return str(self._inner.check())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # anything else, untimed


def timed_store(store: Any) -> Any:
    """``store`` timed when this worker records metrics, else ``store`` itself."""
    return TimedStore(store) if enabled() else store


class FleetCollector:
    """Fleet-wide numbers read from Redis at scrape time (same on every worker)."""

    def __init__(self, settings: Settings) -> None:
        from ..coordination import connections

        self.settings = settings
        self.redis = connections.redis_client(settings, "scssq-metrics")
        broker = dataclasses.replace(settings, redis_url=settings.broker_url)
        self.broker = connections.redis_client(broker, "scssq-metrics-broker")

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from ..coordination.fleet import alive_workers
        from . import stats

        up = GaugeMetricFamily(
            "scssq_fleet_scrape_ok", "1 if the fleet numbers below could be read from Redis"
        )
        try:
            counts = stats.read(self.redis, self.settings.prefix)
            workers = len(alive_workers(self.settings, self.redis))
            pipe = self.broker.pipeline(transaction=False)
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(self.settings.queue + suffix)
            queued = sum(int(n) for n in pipe.execute())
        except Exception as e:  # a scrape must answer even when Redis does not
            log.warning("cannot read fleet metrics from Redis: %s", e)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        requests = CounterMetricFamily(
            "scssq_cache_requests",
            "Submits by what they found: hit (result existed), miss (compiled for it), "
            "shared (waited for another request's compile); counted by the clients",
            labels=["result"],
        )
        for result, value in counts.items():
            requests.add_metric([result], value)
        yield requests
        queue = GaugeMetricFamily(
            "scssq_queue_length", "Compile tasks waiting in the broker queue", labels=["queue"]
        )
        queue.add_metric([self.settings.queue], queued)
        yield queue
        alive = GaugeMetricFamily("scssq_workers_alive", "Workers with a recent heartbeat")
        alive.add_metric([], workers)
        yield alive
