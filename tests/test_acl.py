"""Least privilege on a real redis-server: the ACL users of ``deploy/redis-acl.conf``.

redis-server itself loads the file (``--aclfile``), first as written, then as
:func:`compiler_tasks.coordination.acl.render` adapts it to the test fleet's prefix with
passwords (``ACL LOAD``): the rules tested are the rules deployed. A CI job
with the client credential submits end to end (miss, hit, a hit of a new
commit, a conflict) and uses status/fetch/health; every write it could use to
poison the cache or wedge the fleet is refused with NOPERM.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from compiler_tasks.coordination.acl import ACL_FILE, CLIENT_USER, WORKER_USER, main, render, users
from compiler_tasks.keys import artifact_dir, bundle_path
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer
from tests.test_fleet import HASH1, HASH2, make_src, submit_args

pytestmark = pytest.mark.integration

CLIENT_PW = "client-" + secrets.token_hex(8)
WORKER_PW = "worker-" + secrets.token_hex(8)
HASH3 = "3" * 40


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A private redis-server started with the deploy file as its aclfile."""
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(ACL_FILE.read_text())
    server = RedisServer(extra=("--aclfile", str(aclfile)))
    yield server, aclfile
    server.stop()


def url(server: RedisServer, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


def test_the_deploy_file_loads_as_written_and_admits_nobody(acl_server) -> None:
    server, _ = acl_server
    loaded = {line.split()[1] for line in server.client().acl_list()}
    assert {CLIENT_USER, WORKER_USER} <= loaded
    assert set(users(ACL_FILE.read_text())) == {CLIENT_USER, WORKER_USER}
    for user in (CLIENT_USER, WORKER_USER):  # no password until the operator sets one
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url(server, user, "guess")).ping()


def test_render_adapts_patterns_and_hashes_passwords() -> None:
    text = render(ACL_FILE.read_text(), "acme", "builds", {CLIENT_USER: "pw1"})
    client = users(text)[CLIENT_USER]
    assert "%R~acme:result:*" in client and "&acme:done:*" in client
    assert "(+lpush ~builds)" in " ".join(client)
    worker = users(text)[WORKER_USER]
    assert "~builds[^!-~][^!-~][0-9]" in worker and "&acme:done:*" in worker
    assert "pw1" not in text and any(rule.startswith("#") for rule in client)
    assert "scssq:" not in text.replace("scssq-", "")


def test_acl_command_prints_the_adapted_file(capsys, monkeypatch) -> None:
    monkeypatch.setenv("TEST_CLIENT_PW", "s3cret")
    assert main(["--prefix", "acme", "--queue", "builds", "--password-from-env",
                 f"{CLIENT_USER}=TEST_CLIENT_PW", str(ACL_FILE)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed == render(ACL_FILE.read_text(), "acme", "builds", {CLIENT_USER: "s3cret"})
    assert main(["--prefix", "bad prefix", str(ACL_FILE)]) == 2


def test_s3_policies_match_the_store_layout() -> None:
    deploy = ACL_FILE.parent / "s3"
    artifacts = "arn:aws:s3:::BUCKET/scssq/" + artifact_dir("0" * 64).split("/")[0] + "/*"
    bundles = "arn:aws:s3:::BUCKET/scssq/" + bundle_path("0" * 64).split("/")[0] + "/*"
    client = json.loads((deploy / "client-policy.json").read_text())["Statement"]
    grants = {(a, st["Resource"]) for st in client for a in st["Action"]}
    assert grants == {
        ("s3:GetObject", artifacts),
        ("s3:PutObject", bundles),
        ("s3:ListBucket", "arn:aws:s3:::BUCKET"),
    }
    put = next(st for st in client if "s3:PutObject" in st["Action"])
    assert put["Condition"] == {"Null": {"s3:if-none-match": "false"}}  # create, never replace
    worker = json.loads((deploy / "worker-policy.json").read_text())["Statement"]
    assert ("s3:PutObject", artifacts) in {
        (a, st["Resource"]) for st in worker for a in st["Action"]
    }
    rule = json.loads((deploy / "bundles-lifecycle.json").read_text())["Rules"][0]
    assert "arn:aws:s3:::BUCKET/" + rule["Filter"]["Prefix"] + "*" == bundles
    assert rule["Status"] == "Enabled" and rule["Expiration"]["Days"] >= 1


def _nopermission(action: Callable[[], Any]) -> bool:
    try:
        action()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_client_credential_submits_but_cannot_write(acl_server, tmp_path: Path) -> None:
    server, aclfile = acl_server
    client_url = url(server, CLIENT_USER, CLIENT_PW)
    fleet = Fleet(client_url, tmp_path)
    aclfile.write_text(
        render(
            ACL_FILE.read_text(),
            fleet.prefix,
            fleet.prefix,
            {CLIENT_USER: CLIENT_PW, WORKER_USER: WORKER_PW},
        )
    )
    admin = server.client()
    assert admin.execute_command("ACL", "LOAD")
    fleet.redis.close()
    fleet.redis = admin  # the test's own checks run as the default (admin) user
    try:
        fleet.start_worker(1, extra_env={"SCSSQ_REDIS_URL": url(server, WORKER_USER, WORKER_PW)})
        _client_flows(fleet, tmp_path)
        _client_writes_refused(fleet, client_url)
        assert "NOPERM" not in fleet.full_logs() and "no permissions" not in fleet.full_logs()
    finally:
        fleet.stop()


def _client_flows(fleet: Fleet, tmp: Path) -> None:
    p = fleet.prefix
    src = make_src(
        tmp, {"main.scss": '@import "lib";\n.a { color: $c; }\n', "_lib.scss": "$c: red;"}
    )

    def submit(commit: str, out: str) -> Any:
        proc = fleet.scssq("submit", commit, *submit_args(src, tmp / out), cwd=tmp)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{fleet.logs()}"
        return proc

    assert submit(HASH1, "o1").stdout.startswith("compiled")  # miss: enqueue, wait, download
    assert submit(HASH1, "o2").stdout.startswith("cached")  # hit
    assert submit(HASH2, "o3").stdout.startswith(
        "cached"
    )  # hit of a new commit: mapped by a worker
    deadline = time.monotonic() + 15
    while not fleet.redis.exists(f"{p}:commit:demo:{HASH2}"):
        assert time.monotonic() < deadline, f"the hit was never mapped\n{fleet.logs()}"
        time.sleep(0.05)
    status = fleet.scssq("status", HASH2, "--project", "demo", cwd=tmp)
    assert status.returncode == 0, status.stderr
    (src / "_lib.scss").write_text("$c: blue;")
    changed = submit(HASH1, "o4")  # same commit, other sources: loud, own CSS
    assert "WARNING" in changed.stderr and "first mapping stands" in changed.stderr
    assert "blue" in (tmp / "o4" / "main.css").read_text()
    fetched = fleet.scssq("fetch", HASH1, "--project", "demo", "--out", str(tmp / "f"), cwd=tmp)
    assert fetched.returncode == 5 and "is contested" in fetched.stderr, fetched.stderr
    health = fleet.scssq("health", cwd=tmp)
    assert health.returncode == 0, health.stdout
    assert "cannot read maxmemory-policy" in health.stdout
    assert CLIENT_PW not in health.stdout + changed.stderr
    assert len(fleet.engine_runs()) == 2
    assert fleet.redis.keys(f"{p}:stats:*"), "the client's INCR of its submit counters was refused"


def _client_writes_refused(fleet: Fleet, client_url: str) -> None:
    p = fleet.prefix
    c = redis.Redis.from_url(client_url)
    mapping = fleet.redis.hgetall(f"{p}:commit:demo:{HASH1}")
    key = json.loads(next(iter(mapping.values())))["key"]
    result_before = fleet.redis.get(f"{p}:result:{key}")
    fake_done = json.dumps({"type": "done", "result": {"status": "ok", "outputs": {}}})
    attempts: dict[str, Callable[[], Any]] = {
        "SET a result": lambda: c.set(f"{p}:result:{key}", "{}"),
        "SET a lock": lambda: c.set(f"{p}:lock:{key}", "x", nx=True, px=60_000),
        "DEL a result": lambda: c.delete(f"{p}:result:{key}"),
        "EXPIRE a result": lambda: c.expire(f"{p}:result:{key}", 1),
        "HSETNX a new mapping": lambda: c.hsetnx(f"{p}:commit:demo:{HASH3}", "v", "{}"),
        "HSET over a mapping": lambda: c.hset(f"{p}:commit:demo:{HASH1}", "v", "{}"),
        "HDEL a conflict": lambda: c.hdel(f"{p}:conflict:demo:{HASH1}", "v"),
        "PUBLISH a done message": lambda: c.publish(f"{p}:done:{key}", fake_done),
        "EVAL a script": lambda: c.eval("return 1", 1, f"{p}:result:{key}"),
        "HSET the engine versions": lambda: c.hset(f"{p}:engines", "libsass", "fake 1.0"),
        "ZADD a worker": lambda: c.zadd(f"{p}:workers", {"ghost": time.time()}),
        "LPUSH outside the queue": lambda: c.lpush(f"{p}:result:{key}", "x"),
        "LPOP the queue": lambda: c.lpop(p),
        "DEL the queue": lambda: c.delete(p),
        "KEYS": lambda: c.keys("*"),
        "FLUSHALL": lambda: c.flushall(),
        "CONFIG SET": lambda: c.config_set("maxmemory-policy", "allkeys-lru"),
        "SUBSCRIBE remote control": lambda: _subscribe(c, "/0.celery.pidbox"),
        # what only a client sending through Celery needed: bindings, events, transactions
        "SADD a kombu binding": lambda: c.sadd(f"_kombu.binding.{p}", "x\x06\x16\x06\x16q"),
        "PUBLISH a Celery event": lambda: c.publish("/0.celeryev/task.failed", "{}"),
        "MULTI": lambda: c.execute_command("MULTI"),
        "LLEN the queue": lambda: c.llen(p),
    }
    allowed = [name for name, action in attempts.items() if not _nopermission(action)]
    assert allowed == [], f"the client credential may {allowed}"
    assert fleet.redis.get(f"{p}:result:{key}") == result_before
    assert not fleet.redis.exists(f"{p}:lock:{key}")
    c.close()


def _subscribe(client: redis.Redis, channel: str) -> None:
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=1.0)
    finally:
        pubsub.close()
