"""Trust between submitters on real parts: redis-server, celery workers, ``scssq`` processes.

What a rogue holder of the client credential can do to another team's CI and
deploy steps, tried the way they would: with ``scssq`` itself or with forged
Celery messages (``tests/hostile/forge.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_fleet import HASH1, make_src, ok, submit_args

pytestmark = pytest.mark.integration

VICTIM_CSS = ".brand { color: green; }\n"
ATTACKER_CSS = ".brand { color: red; background: url(https://evil.example/x); }\n"


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
    mine = submit(victim, "o-victim")["digest"]
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
