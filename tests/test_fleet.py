"""End to end on real parts: redis-server, celery worker processes, scssq processes.

Compiles are counted by the engine child processes themselves (one trace line
per compile they run), so no test can pass by counting in the code it tests.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest
import sass

from tests.support.fleet import SCSSQ, Fleet, wait_until
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "site"
HASH1, HASH2 = "a" * 40, "b" * 40
#: Iterations of a CPU-bound Sass loop per second of libsass time, roughly.
LOOPS_PER_SECOND = 3_000_000


def slow_scss(seconds: float, tag: str = "x") -> str:
    n = int(seconds * LOOPS_PER_SECOND)
    return f"$n: 0;\n@for $i from 1 through {n} {{ $n: $n + 1; }}\n.{tag} {{ n: $n; }}\n"


def make_src(tmp: Path, files: dict[str, str], name: str = "src") -> Path:
    src = tmp / name
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


def submit_args(src: Path, out: Path, *extra: str, entry: str = "main.scss") -> list[str]:
    return ["--src", str(src), "--entry", entry, "--out", str(out), "--project", "demo", *extra]


def ok(proc: subprocess.CompletedProcess[str], fleet: Fleet) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n--- workers:\n{fleet.logs()}"
    return proc


def test_example_bundle_equals_direct_libsass(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = tmp_path / "site"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("out"))
    proc = ok(fleet.scssq("submit", HASH1, "--json", cwd=src), fleet)
    report = json.loads(proc.stdout)
    assert report["outcome"] == "compiled"
    css = (src / "out" / "scss" / "main.css").read_bytes()
    direct = sass.compile(
        filename=str(src / "scss" / "main.scss"),
        include_paths=[str(src / "vendor")],
        output_style="expanded",
    )
    assert css == direct.encode()
    assert report["entries"][0]["size"] == len(css)


def test_herd_of_50_submits_compiles_once(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=2, concurrency=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(2.0)})
    procs = [
        fleet.spawn(
            "submit",
            HASH1,
            *submit_args(src, tmp_path / f"out{i}"),
            "--timeout",
            "90",
            cwd=tmp_path,
        )
        for i in range(50)
    ]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    failures = [r for r in results if r[0] != 0]
    assert not failures, f"{failures[:3]}\n{fleet.logs()}"
    assert len(fleet.engine_runs()) == 1
    outputs = {(tmp_path / f"out{i}" / "main.css").read_bytes() for i in range(50)}
    assert len(outputs) == 1 and b"n: " in outputs.pop()
    outcomes = [line.split()[0] for _, out, _ in results for line in out.splitlines()]
    assert outcomes.count("compiled") == 1
    assert set(outcomes) <= {"compiled", "shared", "cached"}


def test_renewal_keeps_a_compile_longer_than_its_ttl_single(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=2, concurrency=1, lock_ttl=1, visibility_timeout=300)
    src = make_src(tmp_path, {"main.scss": slow_scss(4.0)})
    procs = [
        fleet.spawn("submit", HASH1, *submit_args(src, tmp_path / f"out{i}"), cwd=tmp_path)
        for i in range(4)
    ]
    for p in procs:
        assert p.wait(90) == 0, p.communicate()
    assert len(fleet.engine_runs()) == 1
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []  # released cleanly


def test_endless_loop_hits_the_time_limit_and_frees_the_worker(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1, concurrency=1, compile_timeout=2, visibility_timeout=300)
    src = make_src(tmp_path, {"main.scss": "$i: 1;\n@while $i > 0 { $i: $i + 1; }\n"})
    proc = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "compile exceeded 2 s" in proc.stderr
    good = make_src(tmp_path, {"main.scss": ".a { b: c; }"}, "good")
    ok(fleet.scssq("submit", HASH2, *submit_args(good, tmp_path / "out2"), cwd=tmp_path), fleet)
    assert (tmp_path / "out2" / "main.css").read_text().startswith(".a")
    again = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "out"), cwd=tmp_path)
    assert again.returncode == 1
    assert len(fleet.engine_runs()) == 3  # the timeout was not cached


def test_cache_commits_and_conflicts(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(
        tmp_path, {"main.scss": '@import "lib";\n.a { color: $c; }\n', "_lib.scss": "$c: red;\n"}
    )
    first = ok(
        fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o1"), cwd=tmp_path), fleet
    )
    assert first.stdout.startswith("compiled")
    # Same commit again, with every worker gone: served from the cache.
    fleet.stop_workers()
    again = ok(
        fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o2"), cwd=tmp_path), fleet
    )
    assert again.stdout.startswith("cached")
    # A new commit with identical styles: no new compile.
    other = ok(
        fleet.scssq("submit", HASH2, *submit_args(src, tmp_path / "o3"), cwd=tmp_path), fleet
    )
    assert other.stdout.startswith("cached")
    assert len(fleet.engine_runs()) == 1
    # Same commit and options, other content: loud conflict, own CSS, first mapping stands.
    fleet.start_worker(1)
    (src / "_lib.scss").write_text("$c: blue;\n")
    changed = ok(
        fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o4"), cwd=tmp_path), fleet
    )
    assert "WARNING" in changed.stderr and "first mapping stands" in changed.stderr
    assert "blue" in (tmp_path / "o4" / "main.css").read_text()
    # The commit is contested: status and fetch serve neither digest (tests/test_trust.py).
    status = fleet.scssq("status", HASH1, "--project", "demo", cwd=tmp_path)
    assert status.returncode == 5 and "is contested" in status.stderr
    fetched = fleet.scssq(
        "fetch", HASH1, "--project", "demo", "--out", str(tmp_path / "f"), cwd=tmp_path
    )
    assert fetched.returncode == 5, fetched.stderr
    assert not (tmp_path / "f" / "main.css").exists()


def test_compile_error_is_stored_and_returned(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(
        tmp_path,
        {
            "main.scss": '@import "parts/vars";\n',
            "parts/_vars.scss": ".a {\n  color: $missing;\n}\n",
        },
    )
    first = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "parts/_vars.scss:2:" in first.stderr and "missing" in first.stderr
    assert str(tmp_path) not in first.stderr
    second = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), "--json", cwd=tmp_path)
    assert second.returncode == 1
    report = json.loads(second.stdout)
    assert report["ok"] is False and report["exit_code"] == 1
    assert "parts/_vars.scss:2:" in report["error"]["message"]
    assert len(fleet.engine_runs()) == 1  # the error came from the store
    status = fleet.scssq("status", HASH1, "--project", "demo", cwd=tmp_path)
    assert status.returncode == 1 and "error" in status.stdout


def test_s3_store_end_to_end(make_fleet, s3_store_url: str, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1, store=s3_store_url, inline_bundle_max=0)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    ok(fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path), fleet)
    assert (tmp_path / "o" / "main.css").read_text().startswith(".a")
    health = fleet.scssq("health", cwd=tmp_path)
    assert health.returncode == 0, health.stdout


def test_usage_errors_exit_2(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=0)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    bad_hash = fleet.scssq("submit", "../x", *submit_args(src, tmp_path / "o"), cwd=tmp_path)
    assert bad_hash.returncode == 2 and "../x" in bad_hash.stderr
    missing = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o", entry="nope.scss"), cwd=tmp_path
    )
    assert missing.returncode == 2 and "nope.scss" in missing.stderr
    bad_env = fleet.scssq(
        "submit",
        HASH1,
        *submit_args(src, tmp_path / "o"),
        cwd=tmp_path,
        env={"SCSSQ_LOCK_TTL": "soon"},
    )
    assert bad_env.returncode == 2 and "SCSSQ_LOCK_TTL" in bad_env.stderr


def test_no_worker_is_an_infrastructure_error(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=0)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    proc = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), "--json", cwd=tmp_path)
    assert proc.returncode == 3
    assert "start the fleet" in json.loads(proc.stdout)["error"]["message"]
    health = fleet.scssq("health", cwd=tmp_path)
    assert health.returncode == 3 and "FAIL workers" in health.stdout


def test_work_dir_holds_bundles_only_while_they_compile(make_fleet, tmp_path: Path) -> None:
    """SCSSQ_WORK_DIR (a tmpfs in deploy/): checked at start, emptied after each compile,
    and a folder that vanished is an infrastructure failure naming it, not a hang."""
    scratch = tmp_path / "scratch"
    fleet = make_fleet(workers=0, work_dir=scratch, task_retries=0)
    refused = fleet.start_worker(wait=False)
    assert refused.wait(60) != 0
    assert "SCSSQ_WORK_DIR=" in fleet.logs() and "not a writable directory" in fleet.logs()
    fleet.workers.remove(refused)
    scratch.mkdir()
    fleet.start_worker()
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    ok(fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path), fleet)
    assert (tmp_path / "o" / "main.css").read_text() == ".a {\n  b: c;\n}\n"
    wait_until(lambda: list(scratch.iterdir()) == [])  # removed just after the wake-up
    scratch.rmdir()
    (src / "main.scss").write_text(".a { b: d; }\n")
    proc = fleet.scssq("submit", HASH2, *submit_args(src, tmp_path / "o"), "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    message = json.loads(proc.stdout)["error"]["message"]
    assert f"cannot unpack the bundle under {scratch} (SCSSQ_WORK_DIR)" in message


def test_missing_artifact_counts_as_a_miss(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    ok(fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o1"), cwd=tmp_path), fleet)
    shutil.rmtree(tmp_path / "store" / "artifacts")  # the store lost it; Redis still has it
    again = ok(
        fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o2"), cwd=tmp_path), fleet
    )
    assert again.stdout.startswith("compiled")
    assert (tmp_path / "o2" / "main.css").read_text().startswith(".a")
    assert len(fleet.engine_runs()) == 2


def test_no_wait_then_status_and_fetch(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(1.0)})
    queued = ok(
        fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), "--no-wait", cwd=tmp_path),
        fleet,
    )
    assert queued.stdout.startswith("queued")
    assert not (tmp_path / "o").exists()

    def finished() -> bool:
        return fleet.scssq("status", HASH1, "--project", "demo", cwd=tmp_path).returncode == 0

    wait_until(finished, 30)
    fetched = ok(
        fleet.scssq(
            "fetch", HASH1, "--project", "demo", "--out", str(tmp_path / "f"), cwd=tmp_path
        ),
        fleet,
    )
    assert "digest" in fetched.stdout
    assert "n: " in (tmp_path / "f" / "main.css").read_text()
    unknown = fleet.scssq("status", HASH2, "--project", "demo", cwd=tmp_path)
    assert unknown.returncode == 4


def test_terminal_shows_progress_ci_output_stays_one_line(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(0.5)})
    primary, secondary = pty.openpty()
    proc = subprocess.run(
        [SCSSQ, "submit", HASH1, *submit_args(src, tmp_path / "o")],
        cwd=tmp_path,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    os.close(secondary)
    shown = _read_all(primary)
    assert proc.returncode == 0
    assert "queued as" in shown and "compiling on worker w1-" in shown
    ci = ok(fleet.scssq("submit", HASH2, *submit_args(src, tmp_path / "o"), cwd=tmp_path), fleet)
    assert ci.stderr == "" and len(ci.stdout.splitlines()) == 1


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def test_no_worker_alive_is_said_not_hung(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    fleet.stop_workers()  # engines stay registered, nobody consumes
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    proc = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), "--timeout", "3", cwd=tmp_path
    )
    assert proc.returncode == 3
    assert "no worker alive" in proc.stderr
    assert "timed out after 3 s" in proc.stderr


def test_big_bundle_through_the_store_with_metrics_on(make_fleet, tmp_path: Path) -> None:
    """The store path of bundles (above SCSSQ_INLINE_BUNDLE_MAX) with the timed store
    that metrics wrap around it."""
    fleet = make_fleet(workers=1, inline_bundle_max=0, metrics_port=free_port())
    src = make_src(tmp_path, {"main.scss": ".big { b: c; }\n"})
    ok(fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path), fleet)
    assert (tmp_path / "o" / "main.css").read_text().startswith(".big")
    assert list((tmp_path / "store" / "bundles").iterdir())
