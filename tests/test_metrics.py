"""The worker's Prometheus endpoint and task log lines, checked against what happened.

What happened is established independently of the metrics code: compiles are
counted by the engine child processes (the engine trace), submit outcomes are
what each ``scssq submit`` printed, and tasks are the worker's log lines.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from compiler_tasks.observability.logs import TaskRecord
from tests.support.fleet import Fleet
from tests.support.procs import free_port, wait_for
from tests.support.sentry_sink import SentrySink
from tests.test_fleet import HASH1, HASH2, make_src, slow_scss, submit_args

pytestmark = pytest.mark.integration

HASH3 = "c" * 40


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``http://127.0.0.1:port/metrics`` as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, lab), v in samples.items()
        if n == name and all(dict(lab).get(k) == want for k, want in labels.items())
    )


def task_lines(fleet: Fleet) -> list[dict[str, Any]]:
    """The structured line of every task the fleet's workers ran."""
    lines = []
    for log in sorted(fleet.tmp.glob("worker*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith('{"event": "scssq.task"'):
                lines.append(json.loads(line))
    return lines


def test_metrics_and_task_lines_match_what_happened(make_fleet, tmp_path: Path) -> None:
    port = free_port()
    with SentrySink() as sink:
        fleet = make_fleet(workers=1, lock_ttl=2, metrics_port=port, traces_sample_rate=1)
        fleet.env["SENTRY_DSN"] = sink.dsn
        # Workers registered the engine versions; with none running, two submits of the
        # same sources both enqueue, and a new worker then takes both messages at once:
        # one compiles, the other finds the lock taken and defers its re-check.
        fleet.stop_workers()
        src = make_src(tmp_path, {"main.scss": slow_scss(1.5)})
        first, second = (
            fleet.spawn("submit", h, *submit_args(src, tmp_path / f"o{h[0]}"), cwd=tmp_path)
            for h in (HASH1, HASH2)
        )
        wait_for(lambda: fleet.redis.llen(fleet.prefix) == 2, 30, "both compiles queued")
        fleet.start_worker(concurrency=2)
        outputs = []
        for proc in (first, second):
            assert proc.wait(60) == 0, proc.communicate()
            outputs.append(proc.communicate()[0].split()[0])
        broken = make_src(tmp_path, {"main.scss": ".a { b: $nope; }\n"}, "broken")
        bad = fleet.scssq("submit", HASH3, *submit_args(broken, tmp_path / "o3"), cwd=tmp_path)
        assert bad.returncode == 1
        again = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o4"), cwd=tmp_path)
        assert again.returncode == 0
        outputs.append(again.stdout.split()[0])
        assert sorted(outputs) == ["cached", "compiled", "shared"]
        assert len(fleet.engine_runs()) == 2  # the slow sources once, the broken ones once

        def settled() -> bool:
            done = Counter(
                line["outcome"] for line in task_lines(fleet) if line["task"] == "scssq.compile"
            )
            return done["compiled"] == 1 and done["compile-error"] == 1 and done["cached"] >= 1

        wait_for(settled, 30, "every compile task to finish")
        samples = scrape(port)
        lines = [line for line in task_lines(fleet) if line["task"] == "scssq.compile"]
        outcomes = Counter(line["outcome"] for line in lines)

        # Compile tasks by outcome: exactly the tasks the worker logged.
        assert outcomes["deferred"] >= 1
        for outcome, count in outcomes.items():
            got = value(samples, "scssq_compiles_total", engine="libsass", outcome=outcome)
            assert got == count, (outcome, samples)
        assert value(samples, "scssq_compiles_total") == len(lines)
        # One duration per engine run; one lock wait per deferred re-check.
        assert value(samples, "scssq_compile_duration_seconds_count", engine="libsass") == 2
        engine_time = sum(line["compile_s"] for line in lines)
        assert value(samples, "scssq_compile_duration_seconds_sum") == pytest.approx(
            engine_time, abs=0.01
        )
        rechecks = [line for line in lines if line.get("deferred")]
        assert len(rechecks) == outcomes["deferred"]
        assert value(samples, "scssq_lock_wait_seconds_count") == len(rechecks)
        waited = sum(line["lock_wait_s"] for line in rechecks)
        assert value(samples, "scssq_lock_wait_seconds_sum") == pytest.approx(waited, abs=0.01)
        assert 0.5 < waited < 10
        assert value(samples, "scssq_lock_takeovers_total") == 0  # each holder finished
        assert value(samples, "scssq_lock_renewal_failures_total") == 0
        # Store latency: every write was timed (one CSS, two manifests), none failed.
        assert value(samples, "scssq_store_request_duration_seconds_count", operation="put") == 1
        assert (
            value(samples, "scssq_store_request_duration_seconds_count", operation="put_once") == 2
        )
        assert value(samples, "scssq_store_request_duration_seconds_count", status="error") == 0
        # Fleet numbers the clients counted (the cache hit never reached a compile).
        assert value(samples, "scssq_cache_requests_total", result="hit") == 1
        assert value(samples, "scssq_cache_requests_total", result="miss") == 2
        assert value(samples, "scssq_cache_requests_total", result="shared") == 1
        assert value(samples, "scssq_queue_length", queue=fleet.prefix) == 0
        assert value(samples, "scssq_workers_alive") == 1
        assert value(samples, "scssq_fleet_scrape_ok") == 1

        # Task lines carry what ops needs, and the durations add up.
        done = next(line for line in lines if line["outcome"] == "compiled")
        assert {"key", "commit", "engine", "project", "worker", "id"} <= set(done)
        assert done["compile_s"] > 0.2 and done["upload_s"] >= 0 and done["lock_acquire_s"] >= 0
        assert done["total_s"] >= done["compile_s"] + done["upload_s"]
        assert all("inline" not in line and "options" not in line for line in lines)

        # The deferred re-check is traced: its lock.wait continues the submit's trace
        # and carries the time it waited.
        waits = sink.wait_for(
            "re-check lock.wait span",
            lambda: [s for s in sink.spans("lock.wait") if "scssq.waited_s" in s["attributes"]],
        )
        submits = sink.wait_for("client root spans", lambda: sink.roots("scssq submit"))
        assert waits[0]["trace_id"] in {s["trace_id"] for s in submits}
        assert 0.5 < waits[0]["attributes"]["scssq.waited_s"] < 10
        recheck = next(
            s
            for s in sink.roots("scssq.compile")
            if s["span_id"] == waits[0]["attributes"]["sentry.segment.id"]
        )
        assert recheck["attributes"]["outcome"] in ("cached", "deferred")


@pytest.mark.parametrize(
    "text,secret",
    [
        ("Error connecting to redis://:hunter2@redis:6379/0", "hunter2"),
        ("rediss://scssq:hunter2@redis:6380/0 refused", "hunter2"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG in config", "wJalrXUtnFEMI"),
        ("GET /b/k?X-Amz-Security-Token=FwoGZXIvYXdz&Signature=abc123", "FwoGZXIvYXdz"),
    ],
)
def test_task_lines_redact_credentials(text: str, secret: str) -> None:
    line = TaskRecord("scssq.compile", "id", "w1").line("failed", error=text)
    assert secret not in json.dumps(line) and "***" in line["error"]
