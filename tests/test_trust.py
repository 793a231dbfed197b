"""Trust between submitters on real parts: redis-server, celery workers, ``scssq`` processes.

What a rogue holder of the client credential can do to another team's CI and
deploy steps, tried the way they would: with ``scssq`` itself or with forged
Celery messages (``tests/hostile/forge.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from compiler_tasks.coordination.acl import ACL_FILE, CLIENT_USER, WORKER_USER, render
from tests.hostile import forge
from tests.support.fleet import Fleet, wait_until
from tests.support.redis_server import RedisServer
from tests.test_fleet import HASH1, make_src, ok, slow_scss, submit_args

pytestmark = pytest.mark.integration

VICTIM_CSS = ".brand { color: green; }\n"
ATTACKER_CSS = ".brand { color: red; background: url(https://evil.example/x); }\n"
VICTIM_FILES = {"main.scss": VICTIM_CSS.encode()}


def test_a_first_submit_cannot_poison_fetch_or_status(make_fleet, tmp_path: Path) -> None:
    """The attacker maps the victim's commit and project first; the victim then submits.
    A contested commit is served by neither fetch nor status without --digest."""
    fleet = make_fleet(workers=1)
    attacker = make_src(tmp_path, {"main.scss": ATTACKER_CSS}, "attacker")
    victim = make_src(tmp_path, {"main.scss": VICTIM_CSS}, "victim")

    def submit(src: Path, out: str) -> dict[str, str]:
        proc = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / out), "--json", cwd=src)
        return dict(json.loads(ok(proc, fleet).stdout))

    bad = submit(attacker, "o-attacker")["digest"]
    victims = submit(victim, "o-victim")
    mine = victims["digest"]
    assert "green" in (tmp_path / "o-victim" / "main.css").read_text()

    out = tmp_path / "deploy"
    fetched = fleet.scssq("fetch", HASH1, "--project", "demo", "--out", str(out), cwd=tmp_path)
    assert fetched.returncode == 5, fetched.stdout + fetched.stderr
    assert bad in fetched.stderr and mine in fetched.stderr and "--digest" in fetched.stderr
    assert not (out / "main.css").exists()

    status = fleet.scssq("status", HASH1, "--project", "demo", cwd=tmp_path)
    assert status.returncode == 5, status.stdout + status.stderr
    assert bad in status.stderr and mine in status.stderr
    as_json = fleet.scssq("status", HASH1, "--project", "demo", "--json", cwd=tmp_path)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 5 and report["exit_code"] == 5, as_json.stdout
    assert [report["variants"][0]["digest"], report["variants"][0]["conflict_digest"]] == [
        bad,
        mine,
    ]
    later = {"key": victims["key"], "digest": mine, "state": "ok", "message": ""}
    assert report["variants"][0]["contenders"] == [later]

    picked = fleet.scssq(
        "fetch", HASH1, "--project", "demo", "--out", str(out), "--digest", mine, cwd=tmp_path
    )
    assert ok(picked, fleet).stdout.splitlines()[-1] == f"digest   {mine}"
    assert (out / "main.css").read_text() == (tmp_path / "o-victim" / "main.css").read_text()
    mine_status = fleet.scssq(
        "status", HASH1, "--project", "demo", "--digest", mine[:12], cwd=tmp_path
    )
    assert ok(mine_status, fleet).stdout.startswith("ok        key ")
    assert f"digest {mine[:12]}" in mine_status.stdout and bad[:12] not in mine_status.stdout

    wrong = fleet.scssq(
        "fetch", HASH1, "--project", "demo", "--out", str(out), "--digest", "f" * 64, cwd=tmp_path
    )
    assert wrong.returncode == 2 and "f" * 64 in wrong.stderr and mine in wrong.stderr


def _forged(fleet: Fleet, kind: str, key: str, digest: str) -> list[tuple[dict[str, Any], str]]:
    """Messages naming ``key`` that no worker verified, with the task id each is sent as.

    no-bundle: the honest digest, then another, with no bundle inline or in the store
    (retried until SCSSQ_TASK_RETRIES, then given up). repeated-task-id: other sources
    (refused as a key mismatch), three messages under one task id, as a sender may choose
    (past SCSSQ_MAX_DELIVERIES).
    """
    if kind == "no-bundle":
        return [
            (forge.request(fleet, files=VICTIM_FILES, key=key, digest=d, inline=False), "")
            for d in (digest, "e" * 64)
        ]
    return [(forge.request(fleet, files=VICTIM_FILES, key=key), "same-id") for _ in range(3)]


@pytest.mark.parametrize("kind", ["no-bundle", "repeated-task-id"])
def test_forged_messages_cannot_fail_an_honest_compiles_waiters(
    make_fleet, tmp_path: Path, kind: str
) -> None:
    """While an honest compile runs, a rogue client sends messages naming its key that
    were never verified (see _forged). Each is answered to its own submitter alone;
    the honest submitters get their CSS."""
    fleet = make_fleet(workers=1, concurrency=3, task_retries=0, max_deliveries=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(4.0, "honest")})
    procs = [
        fleet.spawn("submit", HASH1, *submit_args(src, tmp_path / f"o{i}"), cwd=tmp_path)
        for i in range(3)
    ]
    wait_until(lambda: fleet.redis.keys(f"{fleet.prefix}:lock:*") != [], timeout=30)
    key = fleet.redis.keys(f"{fleet.prefix}:lock:*")[0].decode().rsplit(":", 1)[1]
    honest = forge.request(fleet, files={"main.scss": slow_scss(4.0, "honest").encode()})
    assert honest["key"] == key, "the test's bundle differs from the submit's"
    listener = fleet.redis.pubsub()
    listener.subscribe(f"{fleet.prefix}:done:{key}")
    forged = _forged(fleet, kind, key, honest["digest"])
    with forge.producer(fleet) as app:
        for job, task_id in forged:
            app.send_task(
                "scssq.compile",
                kwargs={"request": job},
                queue=fleet.prefix,
                task_id=task_id or None,
            )
    failures = []
    while True:  # what the key's channel carried until the honest compile's result
        msg = listener.get_message(timeout=30)
        assert msg is not None, f"no done message\n{fleet.logs()}"
        if msg["type"] == "message" and json.loads(msg["data"])["type"] == "done":
            result = json.loads(msg["data"])["result"]
            if result.get("status") == "ok":
                break
            failures.append(result)
    listener.close()
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"{out}\n{err}\n{fleet.logs()}"
        assert "n: " in (tmp_path / f"o{i}" / "main.css").read_text()
    assert len(fleet.engine_runs()) == 1
    # Every forged message was answered, to its own submitter, before the compile ended.
    assert {f.get("for") for f in failures} == {job["submit"] for job, _ in forged}, failures


def test_entries_that_share_an_output_are_refused_where_they_enter(
    make_fleet, tmp_path: Path
) -> None:
    """``a.scss`` and ``a.sass`` both compile to ``a.css``: refused by the client with
    exit 2 naming both entries and the output, before anything is compiled or stored."""
    fleet = make_fleet(workers=1)
    src = make_src(
        tmp_path, {"css/a.scss": ".a { b: c; }\n", "css/a.sass": ".a\n  b: d\n", "m.scss": ""}
    )
    args = ["--src", str(src), "--out", str(tmp_path / "o"), "--project", "demo"]
    clash = fleet.scssq(
        "submit", HASH1, *args, "--entry", "css/a.scss", "--entry", "css/a.sass", cwd=tmp_path
    )
    assert clash.returncode == 2, clash.stdout + clash.stderr
    for named in ("'css/a.scss'", "'css/a.sass'", "'css/a.css'", "--entry"):
        assert named in clash.stderr, clash.stderr
    (src / "scssq.toml").write_text('entries = ["m.scss", "css/a.sass", "css/a.scss"]\n')
    from_file = fleet.scssq("submit", HASH1, *args, cwd=src)
    assert from_file.returncode == 2 and "'css/a.css'" in from_file.stderr, from_file.stderr
    assert fleet.engine_runs() == [] and not (tmp_path / "store").exists()


def test_a_client_on_another_store_is_told_before_it_compiles(make_fleet, tmp_path: Path) -> None:
    """Workers write to one store, the client reads another: health fails and submit
    exits 2 at once, each naming SCSSQ_STORE and both stores; nothing is compiled."""
    fleet = make_fleet(workers=1)
    workers_store = f"file://{tmp_path / 'store'}"
    other = {"SCSSQ_STORE": f"file://{tmp_path / 'elsewhere'}"}
    health = fleet.scssq("health", cwd=tmp_path, env=other)
    assert health.returncode == 3, health.stdout + health.stderr
    assert "FAIL store match: SCSSQ_STORE is " in health.stdout, health.stdout
    assert workers_store in health.stdout and other["SCSSQ_STORE"] in health.stdout

    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    submit = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path, env=other
    )
    assert submit.returncode == 2, submit.stdout + submit.stderr
    assert "SCSSQ_STORE" in submit.stderr and workers_store in submit.stderr
    assert other["SCSSQ_STORE"] in submit.stderr
    assert fleet.engine_runs() == []

    # The same store written another way (a doubled and a trailing slash) is the same.
    same = {"SCSSQ_STORE": f"file://{tmp_path}//store/"}
    assert ok(fleet.scssq("health", cwd=tmp_path, env=same), fleet).returncode == 0
    ok(
        fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path, env=same),
        fleet,
    )


def test_per_project_acl_users_keep_one_project_off_anothers_commits(tmp_path: Path) -> None:
    """Two project fleets in one Redis, each with its own prefix, queue and ACL users
    (``python -m compiler_tasks.coordination.acl --prefix P --queue P --user-suffix=-P``). Team A's
    client credential cannot submit, read or map under team B's prefix; team B's
    commit is B's alone, and fetch serves it uncontested."""
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("")
    server = RedisServer(extra=("--aclfile", str(aclfile)))
    fleets = {team: Fleet(server.url, tmp_path / team) for team in ("a", "b")}
    try:
        passwords = {}
        for team, fleet in fleets.items():
            (tmp_path / team).mkdir()
            secrets_ = {f"{CLIENT_USER}-{team}": f"c-{team}", f"{WORKER_USER}-{team}": f"w-{team}"}
            passwords.update(secrets_)
            rendered = render(
                ACL_FILE.read_text(), fleet.prefix, fleet.prefix, secrets_, f"-{team}"
            )
            aclfile.write_text(aclfile.read_text() + rendered)
        aclfile.write_text(aclfile.read_text() + "user default on nopass +@all ~* &*\n")
        admin = server.client()
        assert admin.execute_command("ACL", "LOAD")

        def as_user(team: str, kind: str) -> dict[str, str]:
            user = f"{CLIENT_USER if kind == 'client' else WORKER_USER}-{team}"
            return {
                "SCSSQ_REDIS_URL": f"redis://{user}:{passwords[user]}@127.0.0.1:{server.port}/0"
            }

        for team, fleet in fleets.items():
            fleet.start_worker(1, extra_env=as_user(team, "worker"))
        a, b = fleets["a"], fleets["b"]
        attacker = make_src(tmp_path, {"main.scss": ATTACKER_CSS}, "attacker")
        victim = make_src(tmp_path, {"main.scss": VICTIM_CSS}, "victim")
        # Team A's credential aimed at team B's fleet: refused by Redis, nothing mapped.
        aimed = {**as_user("a", "client"), "SCSSQ_PREFIX": b.prefix, "SCSSQ_QUEUE": b.prefix}
        forged = b.scssq(
            "submit",
            HASH1,
            *submit_args(attacker, tmp_path / "x"),
            cwd=tmp_path,
            env=aimed,
            timeout=90,
        )
        assert forged.returncode == 3 and "no permissions" in forged.stderr, forged.stderr
        rogue = redis.Redis.from_url(aimed["SCSSQ_REDIS_URL"])
        with pytest.raises(redis.exceptions.NoPermissionError):
            rogue.lpush(b.prefix, "{}")  # a hand-made task message onto B's queue
        rogue.close()
        # In its own fleet it maps project "demo" only under its own prefix.
        ok(
            a.scssq(
                "submit",
                HASH1,
                *submit_args(attacker, tmp_path / "xa"),
                cwd=tmp_path,
                env=as_user("a", "client"),
            ),
            a,
        )
        mine = json.loads(
            ok(
                b.scssq(
                    "submit",
                    HASH1,
                    *submit_args(victim, tmp_path / "ob"),
                    "--json",
                    cwd=tmp_path,
                    env=as_user("b", "client"),
                ),
                b,
            ).stdout
        )
        assert "WARNING" not in mine["warnings"] and mine["conflict"] is None
        fetched = b.scssq(
            "fetch",
            HASH1,
            "--project",
            "demo",
            "--out",
            str(tmp_path / "f"),
            cwd=tmp_path,
            env=as_user("b", "client"),
        )
        assert ok(fetched, b).stdout.splitlines()[-1] == f"digest   {mine['digest']}"
        assert "green" in (tmp_path / "f" / "main.css").read_text()
    finally:
        for fleet in fleets.values():
            fleet.stop()
        server.stop()
