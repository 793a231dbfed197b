"""Sentry as ops would see it: the real sentry-sdk in real client and worker processes,
sending to a local endpoint that records envelopes (tests/support/sentry_sink.py).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compiler_tasks.errors import ConfigError
from compiler_tasks.observability.sentry import scrub_event
from compiler_tasks.settings import DEFAULT_TRACES_SAMPLE_RATE, Settings
from tests.support.fleet import Fleet
from tests.support.procs import wait_for
from tests.support.proxy import TcpProxy
from tests.support.sentry_sink import SentrySink
from tests.test_fleet import HASH1, HASH2, make_src, slow_scss, submit_args

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def sentry_fleet(make_fleet: Any, sink: SentrySink, workers: int = 1, **settings: Any) -> Fleet:
    fleet: Fleet = make_fleet(workers=0, traces_sample_rate=1, **settings)
    fleet.env.update({"SENTRY_DSN": sink.dsn, "SENTRY_ENVIRONMENT": "test"})
    for _ in range(workers):
        fleet.start_worker(concurrency=1, wait=False)
    fleet.wait_workers(workers)
    return fleet


def took(span: dict[str, Any]) -> float:
    return float(span["end_timestamp"]) - float(span["start_timestamp"])


def test_one_trace_per_submit_from_client_to_worker(make_fleet, tmp_path: Path) -> None:
    token = "tok" + secrets.token_hex(8)
    with SentrySink() as sink:
        fleet = sentry_fleet(make_fleet, sink)
        src = make_src(tmp_path, {"main.scss": f"/* {token} */\n" + slow_scss(3.0, token)})
        first = fleet.spawn("submit", HASH1, *submit_args(src, tmp_path / "o1"), cwd=tmp_path)
        wait_for(lambda: len(fleet.engine_runs()) >= 1, 30, "the compile to start")
        second = fleet.scssq("submit", HASH2, *submit_args(src, tmp_path / "o2"), cwd=tmp_path)
        assert first.wait(60) == 0, first.communicate()
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("shared")

        compiled = sink.wait_for(
            "client root span", lambda: sink.roots("scssq submit", outcome="compiled")
        )[0]
        worker = sink.wait_for(
            "worker root span", lambda: sink.roots("scssq.compile", outcome="compiled")
        )[0]
        shared = sink.wait_for(
            "shared root span", lambda: sink.roots("scssq submit", outcome="shared")
        )[0]
        assert compiled["op"] == "scssq.submit"

        # One trace: the worker's task continues the client's root span through
        # the span of the client's enqueue.
        trace = compiled["trace_id"]
        assert worker["trace_id"] == trace
        enqueue = [
            s for s in sink.children(compiled, "queue.publish") if s["name"] == "scssq.compile"
        ]
        assert worker["parent_span_id"] in [s["span_id"] for s in enqueue]
        assert shared["trace_id"] != trace  # its own submit, its own trace

        # The task's steps, in order, inside the task's time, with sane durations.
        steps = sink.children(worker, "lock.acquire", "scss.compile", "artifact.upload")
        assert [s["op"] for s in steps] == ["lock.acquire", "scss.compile", "artifact.upload"]
        for before, after in itertools.pairwise(steps):
            assert before["end_timestamp"] <= after["start_timestamp"]
        for step in steps:
            assert step["trace_id"] == trace
            assert worker["start_timestamp"] <= step["start_timestamp"]
            assert step["end_timestamp"] <= worker["end_timestamp"]
        durations = {s["op"]: took(s) for s in steps}
        assert 0.5 < durations["scss.compile"] < 30
        assert durations["lock.acquire"] < 1 and durations["artifact.upload"] < 5

        report_key = compiled["attributes"]["key"]
        for root in (compiled, worker, shared):
            attributes = root["attributes"]
            assert attributes["commit"] in (HASH1, HASH2)
            assert attributes["key"] == report_key
            assert attributes["engine"] == "libsass"
            assert attributes["sentry.release"] == "scssq@0.1.0"
            assert attributes["sentry.environment"] == "test"
            assert "process.command_args" not in attributes
        for step in steps:
            assert step["attributes"]["key"] == report_key
            assert step["attributes"]["commit"] == HASH1
        assert worker["attributes"]["commit"] == HASH1

        # The submit that waited for another request's compile shows that wait.
        waits = sink.children(shared, "lock.wait")
        assert len(waits) == 1 and took(waits[0]) > 0.05
        sent = [s["name"] for s in sink.children(shared, "queue.publish")]
        assert "scssq.compile" not in sent  # it enqueued no compile of its own

        assert sink.errors() == []
        assert token.encode() not in sink.raw()
        assert b"inline" not in sink.raw()
        assert not sink.rejected


def test_compile_errors_are_not_captured_store_outages_are(
    make_fleet, s3_endpoint: str, s3_store_url: str, tmp_path: Path, monkeypatch
) -> None:
    token = "tok" + secrets.token_hex(8)
    proxy = TcpProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    try:
        with SentrySink() as sink:
            fleet = sentry_fleet(make_fleet, sink, store=s3_store_url, task_retries=1)
            broken = make_src(tmp_path, {"main.scss": f".{token} {{ a: ${token}; }}\n"}, "broken")
            proc = fleet.scssq("submit", HASH1, *submit_args(broken, tmp_path / "o"), cwd=tmp_path)
            assert proc.returncode == 1 and token in proc.stderr  # the user sees it...
            sink.wait_for(
                "compile-error root span",
                lambda: sink.roots("scssq.compile", outcome="compile-error"),
            )
            client = sink.roots("scssq submit", outcome="compile-error")
            assert len(client) == 1 and client[0]["status"] == "ok"
            assert sink.errors() == []  # ...Sentry gets no error event for it

            good = make_src(tmp_path, {"main.scss": f"/* {token} */ .{token} {{ a: b; }}\n"})
            proxy.cut()
            proc = fleet.scssq("submit", HASH2, *submit_args(good, tmp_path / "o2"), cwd=tmp_path)
            assert proc.returncode == 3, proc.stderr
            failed = sink.wait_for(
                "failed root span", lambda: sink.roots("scssq.compile", outcome="failed")
            )[0]
            errors = sink.wait_for("an error event", sink.errors)
            client = sink.wait_for(
                "failed client root span", lambda: sink.roots("scssq submit", outcome="failed")
            )[0]
            assert len(errors) == 1, errors
            event = errors[0]
            assert event["exception"]["values"][-1]["type"] == "StoreError"
            assert event["tags"]["commit"] == HASH2 and event["tags"]["engine"] == "libsass"
            assert event["contexts"]["compile"]["key"] == failed["attributes"]["key"]
            assert event["contexts"]["trace"]["trace_id"] == client["trace_id"]
            assert failed["status"] == "error" and client["status"] == "error"
            # Not a line of the user's sources anywhere, nor the bundle.
            assert token.encode() not in sink.raw()
            assert "celery-job" not in event.get("extra", {}) or not {"args", "kwargs"} & set(
                event["extra"]["celery-job"]
            )
            assert all("vars" not in frame for frame in _frames(event))
    finally:
        proxy.close()


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        frame
        for value in event["exception"]["values"]
        for frame in (value.get("stacktrace") or {}).get("frames", [])
    ]


IMPORTS = "import sys\nfrom cli.main import main\nsys.argv[0] = 'scssq'\nmain()\n"


def test_client_without_dsn_imports_no_sentry(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    args = ["submit", HASH1, *submit_args(src, tmp_path / "o")]
    first = fleet.scssq(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr

    def hit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-X", "importtime", "-c", IMPORTS, *args],
            cwd=tmp_path,
            env={**fleet.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    plain = hit({"SENTRY_DSN": ""})
    assert plain.returncode == 0 and plain.stdout.startswith("cached"), plain.stderr[-2000:]
    assert "import time:" in plain.stderr
    assert "sentry_sdk" not in plain.stderr
    with SentrySink() as sink:
        traced = hit({"SENTRY_DSN": sink.dsn, "SCSSQ_TRACES_SAMPLE_RATE": "1"})
        assert traced.returncode == 0 and traced.stdout.startswith("cached")
        assert "sentry_sdk" in traced.stderr  # the check above can see an import
        roots = sink.roots("scssq submit", outcome="cached")  # flushed before exit
        assert len(roots) == 1 and roots[0]["attributes"]["commit"] == HASH1


def test_events_lose_task_arguments_and_engine_output() -> None:
    bundle = base64.b64encode(b".secret-rule { a: b; }").decode()
    event = {
        "extra": {
            "celery-job": {
                "task_name": "scssq.compile",
                "args": [],
                "kwargs": {"request": {"inline": bundle}},
            }
        },
        "request": {"data": bundle},
        "exception": {"values": [{"type": "X", "value": "rediss://u:hunter2@r:6380/0 down"}]},
        "breadcrumbs": {
            "values": [
                {"message": "engine process died; stderr: .secret-rule { a: b; }"},
                {"message": "Redis at redis://:hunter2@redis:6379/0 failed"},
            ]
        },
    }
    scrubbed = json.dumps(scrub_event(event, {}))
    assert bundle not in scrubbed and "secret-rule" not in scrubbed and "hunter2" not in scrubbed
    assert event["extra"]["celery-job"] == {"task_name": "scssq.compile"}
    assert "engine process died" in scrubbed  # what happened stays


@pytest.mark.parametrize("value", ["1.5", "-0.1", "often"])
def test_traces_sample_rate_must_be_a_rate(value: str) -> None:
    with pytest.raises(ConfigError, match="SCSSQ_TRACES_SAMPLE_RATE"):
        Settings.from_env({"SCSSQ_TRACES_SAMPLE_RATE": value})
    assert Settings.from_env({"SCSSQ_TRACES_SAMPLE_RATE": "0.25"}).traces_sample_rate == 0.25
    assert Settings.from_env({}).traces_sample_rate == DEFAULT_TRACES_SAMPLE_RATE
