"""Regression tests of issue #22 on real parts: redis-server, celery workers, scssq processes.

Each test reproduces a defect that broke the architecture contract and asserts what a
user checks: exit codes, CSS bytes and the number of engine runs (counted by the engine
child processes themselves).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from compiler_tasks.bundle.collect import collect
from compiler_tasks.keys import bundle_path
from compiler_tasks.settings import Settings
from tests.support.fleet import Fleet, wait_until
from tests.support.gate import GateProxy
from tests.test_fleet import HASH1, HASH2, make_src, slow_scss, submit_args

pytestmark = pytest.mark.integration


def _ok(proc, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n--- workers:\n{fleet.logs()}"


def test_lock_held_across_many_short_entries(make_fleet, tmp_path: Path) -> None:
    """Item 1: 10 entries of ~0.5 s under a 2 s TTL (no single entry reaches ttl/3)."""
    fleet = make_fleet(workers=1, concurrency=1, lock_ttl=2, visibility_timeout=300)
    entries = [f"e{i}.scss" for i in range(10)]
    src = make_src(tmp_path, {name: slow_scss(0.5, tag=f"e{i}") for i, name in enumerate(entries)})
    args = submit_args(src, tmp_path / "out", entry=entries[0])
    for name in entries[1:]:
        args += ["--entry", name]
    proc = fleet.scssq("submit", HASH1, *args, "--timeout", "60", cwd=tmp_path, timeout=90)
    _ok(proc, fleet)
    runs = [line.split()[1] for line in fleet.engine_runs()]
    assert sorted(runs) == sorted(entries)  # each entry compiled once: one job
    for i, name in enumerate(entries):
        assert f".e{i}" in (tmp_path / "out" / name.replace(".scss", ".css")).read_text()
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []


def test_a_holder_that_read_miss_before_another_completed_does_not_compile(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """Item 0: worker 2 reads "miss" and is stopped at its lock command (a proxy holds
    it); worker 1 compiles and completes the key; then worker 2's lock command goes on."""
    fleet = make_fleet(workers=1, concurrency=1)
    gate = GateProxy(redis_server.port, f"{fleet.prefix}:lock:".encode())
    try:
        gated = {"SCSSQ_REDIS_URL": f"redis://127.0.0.1:{gate.port}/0"}
        queue2 = {"SCSSQ_QUEUE": fleet.prefix + "-2"}
        fleet.start_worker(1, extra_env={**gated, **queue2})
        src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
        late = fleet.spawn(
            "submit", HASH1, *submit_args(src, tmp_path / "o2"), cwd=tmp_path, env=queue2
        )
        assert gate.held.wait(60), fleet.logs()  # worker 2 read the result: a miss
        first = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o1"), cwd=tmp_path)
        _ok(first, fleet)
        assert first.stdout.startswith("compiled")
        gate.open()
        assert late.wait(60) == 0, late.communicate()
        log = fleet.tmp / "worker2.log"
        wait_until(lambda: "succeeded" in log.read_text(errors="replace"), timeout=60)
    finally:
        gate.close()
    assert len(fleet.engine_runs()) == 1, fleet.logs()
    assert (tmp_path / "o2" / "main.css").read_bytes() == (
        tmp_path / "o1" / "main.css"
    ).read_bytes()


def _restart(fleet: Fleet, **settings: str) -> dict[str, str]:
    """Restart the fleet's workers with new settings (what an operator does); the env."""
    env = {f"SCSSQ_{k.upper()}": v for k, v in settings.items()}
    fleet.stop_workers()
    fleet.start_worker(1, extra_env=env)
    return env


def test_an_output_limit_error_heals_once_the_limit_is_raised(make_fleet, tmp_path: Path) -> None:
    """Item 3: an error that depends on the worker's settings is never a cached result."""
    fleet = make_fleet(workers=1, concurrency=1, max_output_bytes=1024)
    rules = "".join(f".rule-{i} {{ color: red; }}\n" for i in range(100))
    src = make_src(tmp_path, {"main.scss": rules})
    small = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o1"), cwd=tmp_path)
    assert small.returncode == 1, small.stderr
    assert "SCSSQ_MAX_OUTPUT_BYTES" in small.stderr
    env = _restart(fleet, max_output_bytes="1000000")
    for key in fleet.redis.keys(f"{fleet.prefix}:result:*"):  # the result's retention ended
        fleet.redis.delete(key)
    raised = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o2"), cwd=tmp_path, env=env)
    _ok(raised, fleet)
    assert (tmp_path / "o2" / "main.css").read_text().count("color: red") == 100


def test_a_success_replaces_a_stored_worker_dependent_error(make_fleet, tmp_path: Path) -> None:
    """Item 3: an error manifest an older worker stored (an output limit) outlives its
    result; the next compile of the key succeeds and its manifest replaces the error."""
    fleet = make_fleet(workers=1, concurrency=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    first = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o1"), "--json", cwd=tmp_path)
    _ok(first, fleet)
    key = json.loads(first.stdout)["key"]
    manifest = tmp_path / "store" / "artifacts" / key / "manifest.json"
    stored = json.loads(manifest.read_text())
    message = "main.scss: output exceeds 1024 bytes (the limit is SCSSQ_MAX_OUTPUT_BYTES)"
    stored.update(status="error", kind="compile", message=message, outputs={})
    manifest.unlink()
    manifest.write_text(json.dumps(stored))
    fleet.redis.delete(f"{fleet.prefix}:result:{key}")  # the result's retention ended
    again = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o2"), cwd=tmp_path)
    _ok(again, fleet)
    assert (tmp_path / "o2" / "main.css").read_text().startswith(".a")
    assert json.loads(manifest.read_text())["status"] == "ok"


MEMORY_BOMB = (
    '$s: "xxxxxxxxxxxxxxxx";\n@for $i from 1 through 22 { $s: $s + $s; }\n'
    ".a { b: str-length($s); }\n"
)


def test_a_memory_limit_hit_is_reported_at_once_and_not_cached(make_fleet, tmp_path: Path) -> None:
    """Item 6: a limit hit is exit 1 naming its variable, one engine run (no crash
    retries), nothing cached; after the limit is raised the same sources compile."""
    fleet = make_fleet(workers=1, concurrency=1, engine_memory_mb=200, task_retries=3)
    src = make_src(tmp_path, {"main.scss": MEMORY_BOMB})
    hit = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o1"), cwd=tmp_path)
    assert hit.returncode == 1, f"{hit.stderr}\n{fleet.logs()}"
    assert "SCSSQ_ENGINE_MEMORY_MB=200" in hit.stderr
    assert len(fleet.engine_runs()) == 1
    assert fleet.redis.keys(f"{fleet.prefix}:result:*") == []
    env = _restart(fleet, engine_memory_mb="1024")
    raised = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o2"), cwd=tmp_path, env=env)
    _ok(raised, fleet)
    assert "b: 67108864" in (tmp_path / "o2" / "main.css").read_text()


def test_garbage_planted_under_a_bundles_name_is_not_trusted(make_fleet, tmp_path: Path) -> None:
    """Item 6a: another client wrote bundles/<digest> first; the honest submit compiles."""
    fleet = make_fleet(workers=1, concurrency=1, inline_bundle_max=0)
    src = make_src(tmp_path, {"main.scss": '@import "lib";\n.a { color: $c; }\n'})
    (src / "_lib.scss").write_text("$c: red;\n")
    settings = Settings.from_env({})
    digest = collect(
        src, exclude=[], max_bytes=settings.max_bundle_bytes, max_files=settings.max_bundle_files
    ).digest
    for name, garbage in (("g1", b"not a tar.gz"), ("g2", None)):
        other = make_src(tmp_path, {"main.scss": ".evil { x: y; }\n"}, name)
        planted = tmp_path / "store" / bundle_path(digest)
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.unlink(missing_ok=True)
        data = garbage or collect(other, exclude=[], max_bytes=1 << 20, max_files=10).archive()
        planted.write_bytes(data)  # garbage, then a real archive of other sources
        out = tmp_path / f"o-{name}"
        proc = fleet.scssq("submit", HASH1, *submit_args(src, out), cwd=tmp_path)
        _ok(proc, fleet)
        assert ".a {\n  color: red;\n}" in (out / "main.css").read_text()
        for key in fleet.redis.keys(f"{fleet.prefix}:result:*"):  # compile it again
            fleet.redis.delete(key)
        shutil.rmtree(tmp_path / "store" / "artifacts")


def test_the_manifest_records_the_engine_version_the_worker_ran(make_fleet, tmp_path: Path) -> None:
    """Item 6b: a request claiming another engine version (the key itself is right)."""
    fleet = make_fleet(workers=1, concurrency=1)
    version = fleet.redis.hget(f"{fleet.prefix}:engines", "libsass").decode()
    fleet.stop_workers()
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    queued = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), "--no-wait", cwd=tmp_path
    )
    assert queued.returncode == 0, queued.stderr
    raw = fleet.redis.rpop(fleet.prefix)
    message = json.loads(raw)
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    kwargs["request"]["engine_version"] = "libsass 0.0 (claimed)"
    message["body"] = base64.b64encode(json.dumps([args, kwargs, embed]).encode()).decode()
    fleet.redis.rpush(fleet.prefix, json.dumps(message))
    fleet.start_worker(1)
    key = kwargs["request"]["key"]
    wait_until(lambda: fleet.redis.exists(f"{fleet.prefix}:result:{key}"), timeout=60)
    manifest = json.loads((tmp_path / "store" / "artifacts" / key / "manifest.json").read_text())
    assert manifest["engine_version"] == version
    # Another commit of the same sources is a hit the fleet maps: the result proves the key.
    _ok(fleet.scssq("submit", HASH2, *submit_args(src, tmp_path / "o2"), cwd=tmp_path), fleet)
    out = tmp_path / "fetched"
    wait_until(
        lambda: fleet.scssq("status", HASH2, "--project", "demo", cwd=tmp_path).returncode == 0, 30
    )
    fetched = fleet.scssq("fetch", HASH2, "--project", "demo", "--out", str(out), cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
