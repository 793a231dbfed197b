"""The client's one path (cli/client.py) and its RESP2 connection, against a real
redis-server and real workers.

What a process imported is read from ``PYTHONPROFILEIMPORTTIME`` (Python's own
``-X importtime``): no submit imports redis-py, Celery or boto3.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis

from compiler_tasks.protocol.messages import task_message
from compiler_tasks.protocol.resp import RespConnection, RespError, Target, parse_url
from compiler_tasks.settings import Settings
from tests.support.fleet import Fleet, wait_until
from tests.test_fleet import HASH1, HASH2, make_src, submit_args

HEAVY = {"redis", "celery", "kombu", "boto3", "botocore"}


def imported(stderr: str) -> set[str]:
    """Top-level packages a process imported, from its ``-X importtime`` lines."""
    return {
        m.group(1).split(".")[0]
        for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", stderr, re.M)
    }


def submit(
    fleet: Fleet, commit: str, src: Path, out: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    proc = fleet.scssq(
        "submit",
        commit,
        *submit_args(src, out),
        cwd=src.parent,
        env={"PYTHONPROFILEIMPORTTIME": "1", **env},
    )
    return proc, imported(proc.stderr)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://h:1234/2", Target(False, "h", 1234, "", None, None, 2)),
        ("redis://localhost", Target(False, "localhost", 6379, "", None, None, 0)),
        ("rediss://:p%40ss@h/0", Target(True, "h", 6379, "", None, "p@ss", 0)),
        ("redis://u:pw@h:1/0?db=5", Target(False, "h", 1, "", "u", "pw", 5)),
        ("unix:///run/r.sock?db=3", Target(False, "localhost", 6379, "/run/r.sock", None, None, 3)),
    ],
)
def test_parse_url(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    "url",
    ["redis://h/2", "redis://h/2?db=3", "redis://h?db=4", "redis://u:p@h:7/0?db=5", "redis://h"],
)
def test_parse_url_picks_the_database_redis_py_picks(url: str) -> None:
    """The client reads the database the workers' redis-py reads."""
    assert parse_url(url).db == int(redis.connection.parse_url(url).get("db", 0))


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/0?socket_timeout=5",  # an option only redis-py knows: refused (exit 2)
        "http://h/0",
        "redis://u@h/0",  # a user without a password
        "redis://h/x",
        "redis://h:99999/0",
    ],
)
def test_parse_url_leaves_the_rest_to_redis_py(url: str) -> None:
    with pytest.raises(RespError):
        parse_url(url)


def _settings(url: str) -> Settings:
    return Settings.from_env({"SCSSQ_REDIS_URL": url})


def test_resp_pipelines_replies_and_errors(redis_server) -> None:
    key = "resp-" + secrets.token_hex(4)
    with RespConnection.open(_settings(redis_server.url), timeout=5) as conn:
        assert conn.call(("SET", key, "v"), ("GET", key), ("GET", key + "-none")) == [
            "OK",
            b"v",
            None,
        ]
        assert conn.call(("RPUSH", key + "l", "a", "b"), ("LRANGE", key + "l", "0", "-1")) == [
            2,
            [b"a", b"b"],
        ]
        with pytest.raises(RespError, match="WRONGTYPE"):
            conn.call(("HGET", key, "f"))
        assert conn.call(("INCR", key + "n")) == [1]  # the connection stays usable


def test_resp_authenticates_and_selects_the_database(redis_server) -> None:
    admin = redis_server.client()
    user, password = "u" + secrets.token_hex(4), secrets.token_hex(8)
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    key = "resp-" + secrets.token_hex(4)
    db3 = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/3")
    try:
        url = redis_server.url.replace("redis://", f"redis://{user}:{password}@")
        url = url.rsplit("/", 1)[0] + "/3"
        with RespConnection.open(_settings(url), timeout=5) as conn:
            assert conn.call(("SET", key, "in-3"), ("ACL", "WHOAMI")) == ["OK", user.encode()]
        assert db3.get(key) == b"in-3"
        bad = url.replace(password, "wrong")
        with (
            pytest.raises(RespError, match="WRONGPASS"),
            RespConnection.open(_settings(bad), timeout=5) as conn,
        ):
            conn.call(("PING",))
    finally:
        admin.acl_deluser(user)
        db3.delete(key)


def _commands_of_the_hit(lines: list[str], prefix: str) -> list[str]:
    """The commands of the one connection that read a result of ``prefix``."""
    addr = next(
        m.group(1)
        for line in lines
        if f'"GET" "{prefix}:result:' in line
        for m in [re.search(r"\[\d+ ([^\]]+)\]", line)]
        if m
    )
    return [line.split("] ", 1)[1] for line in lines if f" {addr}]" in line]


def test_hit_process_imports_no_redis_py_and_sends_four_commands(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    first, _ = submit(fleet, HASH1, src, tmp_path / "o1")
    assert first.returncode == 0 and first.stdout.startswith("compiled"), first.stderr[-2000:]

    lines: list[str] = []
    with redis_server.client(decode_responses=True).monitor() as monitor:
        hit, modules = submit(fleet, HASH1, src, tmp_path / "o2")
        sentinel = "sentinel-" + secrets.token_hex(3)
        fleet.redis.get(sentinel)
        while not any(sentinel in line for line in lines):
            lines.append(str(monitor.connection.read_response()))
    assert hit.returncode == 0 and hit.stdout.startswith("cached"), hit.stderr[-2000:]
    assert (tmp_path / "o2" / "main.css").read_text() == (tmp_path / "o1" / "main.css").read_text()
    assert not modules & HEAVY, modules & HEAVY
    assert "subprocess" not in modules  # a full hash runs no git
    commands = [c.split('"')[1] for c in _commands_of_the_hit(lines, fleet.prefix)]
    assert commands == ["HGET", "GET", "HGET", "INCR"], _commands_of_the_hit(lines, fleet.prefix)


def _status(fleet: Fleet, commit: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return fleet.scssq("status", commit, "--project", "demo", cwd=cwd)


def test_new_commit_hits_fast_and_a_worker_maps_it(make_fleet, tmp_path: Path) -> None:
    """The usual CI push: a new commit, styles unchanged. The hit pushes a hand-built
    scssq.record message; a real worker runs it and maps the commit."""
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    assert submit(fleet, HASH1, src, tmp_path / "o1")[0].returncode == 0
    assert _status(fleet, HASH2, src.parent).returncode == 4  # unknown commit
    new, modules = submit(fleet, HASH2, src, tmp_path / "o2")
    assert new.returncode == 0 and new.stdout.startswith("cached"), new.stderr[-2000:]
    assert not modules & HEAVY, modules & HEAVY
    wait_until(lambda: _status(fleet, HASH2, src.parent).returncode == 0)
    assert "record" in fleet.logs()
    assert len(fleet.engine_runs()) == 1


def test_a_refused_record_task_is_said_and_the_hit_still_delivers(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """A credential that may not LPUSH (a too-tight ACL): the hit of a new commit still
    gets its CSS, and the user is told the commit was not recorded."""
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    assert submit(fleet, HASH1, src, tmp_path / "o1")[0].returncode == 0
    user, password = "nopush-" + secrets.token_hex(3), secrets.token_hex(8)
    redis_server.client().execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-lpush"
    )
    url = fleet.env["SCSSQ_REDIS_URL"].replace("redis://", f"redis://{user}:{password}@")
    hit, _ = submit(fleet, HASH2, src, tmp_path / "o2", SCSSQ_REDIS_URL=url)
    assert hit.returncode == 0 and hit.stdout.startswith("cached"), hit.stderr[-2000:]
    assert (tmp_path / "o2" / "main.css").read_bytes() == (
        tmp_path / "o1" / "main.css"
    ).read_bytes()
    assert f"could not ask the fleet to record commit {HASH2[:12]}" in hit.stderr
    assert "NOPERM" in hit.stderr


def test_conflicting_commit_on_a_hit_is_reported_and_recorded(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    red = make_src(tmp_path, {"main.scss": ".a { color: red; }\n"}, name="red")
    blue = make_src(tmp_path, {"main.scss": ".a { color: blue; }\n"}, name="blue")
    assert submit(fleet, HASH1, red, tmp_path / "o1")[0].returncode == 0
    assert submit(fleet, HASH2, blue, tmp_path / "o2")[0].returncode == 0
    # HASH1 again, with blue's sources (already compiled): a hit, and a conflict.
    hit, modules = submit(fleet, HASH1, blue, tmp_path / "o3")
    assert hit.returncode == 0 and hit.stdout.startswith("cached"), hit.stderr[-2000:]
    assert not modules & HEAVY
    assert "WARNING" in hit.stderr and "first mapping stands" in hit.stderr
    assert "blue" in (tmp_path / "o3" / "main.css").read_text()
    wait_until(lambda: "is contested" in _status(fleet, HASH1, tmp_path).stderr)


def test_hand_built_record_message_matches_celerys(redis_server, tmp_path: Path) -> None:
    """``task_message`` against the message ``app.send_task`` leaves on the same queue."""
    queue = "q" + secrets.token_hex(4)
    script = (
        "from compiler_tasks.app import app; "
        "app.send_task('scssq.record', kwargs={'request': {'a': [1, 'b']}}, "
        f"queue={queue!r}, expires=600.0, kwargsrepr='shown')"
    )
    env = {**os.environ, "SCSSQ_REDIS_URL": redis_server.url, "SCSSQ_QUEUE": queue}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    conn = redis_server.client()
    theirs = json.loads(conn.rpop(queue))
    ours = json.loads(
        task_message(
            "scssq.record",
            {"request": {"a": [1, "b"]}},
            queue,
            expires_in=600.0,
            kwargsrepr="shown",
        )
    )
    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])
    for part in ("headers", "properties"):
        assert ours[part].keys() == theirs[part].keys(), part
    varying = {"id", "root_id", "origin", "expires", "correlation_id", "reply_to", "delivery_tag"}
    for part in ("headers", "properties"):
        for name, value in theirs[part].items():
            if name not in varying:
                assert ours[part][name] == value, (part, name)
    assert (
        ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"]["correlation_id"]
    )
    uuid.UUID(ours["headers"]["id"])
    assert abs(
        datetime.fromisoformat(ours["headers"]["expires"])
        - datetime.fromisoformat(theirs["headers"]["expires"])
    ) < timedelta(seconds=30)
    assert {k: v for k, v in ours.items() if k not in ("headers", "properties", "body")} == {
        k: v for k, v in theirs.items() if k not in ("headers", "properties", "body")
    }


def test_a_separate_broker_gets_the_record_task(make_fleet, tmp_path: Path) -> None:
    """SCSSQ_BROKER_URL names another Redis (here: the same one, written another way):
    the record task goes there over a second connection of the same kind."""
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    assert submit(fleet, HASH1, src, tmp_path / "o1")[0].returncode == 0
    # The same server and database, written another way: a broker URL that is not
    # SCSSQ_REDIS_URL (a name such as localhost need not resolve on every machine).
    broker = fleet.env["SCSSQ_REDIS_URL"].removesuffix("/0")
    assert broker != fleet.env["SCSSQ_REDIS_URL"]
    new, modules = submit(fleet, HASH2, src, tmp_path / "o2", SCSSQ_BROKER_URL=broker)
    assert new.returncode == 0 and new.stdout.startswith("cached"), new.stderr[-2000:]
    assert not modules & HEAVY, modules & HEAVY
    wait_until(lambda: _status(fleet, HASH2, src.parent).returncode == 0)


def test_a_miss_imports_no_celery_and_a_worker_runs_the_task(make_fleet, tmp_path: Path) -> None:
    """The compile task is a hand-built protocol 2 message too: a real worker runs it."""
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    miss, modules = submit(fleet, HASH1, src, tmp_path / "o1")
    assert miss.returncode == 0 and miss.stdout.startswith("compiled"), miss.stderr[-2000:]
    assert not modules & HEAVY, modules & HEAVY
    assert "b: c" in (tmp_path / "o1" / "main.css").read_text()


def test_stored_compile_error_is_a_fast_hit(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n.a { b: $nope; }\n"})
    first, _ = submit(fleet, HASH1, src, tmp_path / "o1")
    assert first.returncode == 1, first.stderr[-2000:]
    again, modules = submit(fleet, HASH1, src, tmp_path / "o2")
    assert again.returncode == 1
    assert not modules & HEAVY
    error = re.findall(r"^scssq: compile error: .*", again.stderr, re.M)
    assert error == ['scssq: compile error: main.scss:2:9: Undefined variable: "$nope".'], error
    assert error == re.findall(r"^scssq: compile error: .*", first.stderr, re.M)


def test_a_url_option_the_client_does_not_speak_is_a_usage_error(
    make_fleet, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    url = fleet.env["SCSSQ_REDIS_URL"] + "?socket_timeout=7"
    proc, _ = submit(fleet, HASH1, src, tmp_path / "o2", SCSSQ_REDIS_URL=url)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "SCSSQ_REDIS_URL" in proc.stderr and "socket_timeout" in proc.stderr


def test_unreachable_redis_is_reported_as_before(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=0)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    started = time.monotonic()
    proc = fleet.scssq(
        "submit",
        HASH1,
        *submit_args(src, tmp_path / "o"),
        "--timeout",
        "3",
        cwd=src.parent,
        env={"SCSSQ_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert proc.returncode == 3 and "unreachable" in proc.stderr, proc.stderr[-2000:]
    assert time.monotonic() - started < 15
