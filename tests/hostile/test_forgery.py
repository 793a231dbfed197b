"""Cache poisoning (the class of Nx's CVE-2025-36852) with forged requests to a real worker.

A client credential can enqueue anything. A worker never trusts the key a
request claims: it recomputes it from the bundle it received, before it
touches the key's lock, and refuses a mismatch to that submitter only. A
commit mapping is written by workers and only for a digest the key provably
compiles, so a forged "record" cannot point a commit at other sources' CSS.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from compiler_tasks.bundle.model import Bundle
from compiler_tasks.coordination.events import Waiter
from compiler_tasks.errors import FleetTimeout
from compiler_tasks.keys import RedisKeys
from tests.hostile import forge
from tests.test_fleet import make_src, submit_args

pytestmark = pytest.mark.integration

VICTIM = {"main.scss": b".brand { color: green; }\n"}
ATTACKER = {"main.scss": b".brand { color: red; background: url(https://evil.example/x); }\n"}
HONEST_COMMIT, FORGED_COMMIT = "1" * 40, "2" * 40


def test_forged_keys_are_refused_and_never_cached(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    victim = forge.request(fleet, files=VICTIM, commit=HONEST_COMMIT)
    claimed = victim["key"]  # what an honest submit of the victim's sources waits on
    honest = Waiter(fleet.redis, RedisKeys(fleet.prefix), claimed, submit="0" * 16)
    assert honest.subscribe(time.monotonic() + 5) is None

    # Attacker's sources under the victim's key: its own digest, then the victim's digest.
    forged = [
        forge.request(fleet, files=ATTACKER, key=claimed),
        forge.request(fleet, files=ATTACKER, key=claimed, digest=victim["digest"]),
    ]
    reasons = ["compile key mismatch", "differs from the claimed"]
    for job, reason in zip(forged, reasons, strict=True):
        result = forge.send_and_wait(fleet, job)
        assert result["status"] == "failed" and result["for"] == job["submit"], result
        assert reason in result["message"], result
    # The honest waiter on that key was not woken by those refusals.
    with pytest.raises(FleetTimeout):
        honest.wait(time.monotonic() + 1.0, cap=1.0)
    honest.close()
    assert fleet.engine_runs() == []
    for kind in ("result", "lock", "commit"):
        assert fleet.redis.keys(f"{fleet.prefix}:{kind}:*") == [], kind

    # A forged "record" cannot map a commit to a key with another digest; a true one can.
    attacker_digest = Bundle.from_files(ATTACKER).digest
    fake = {**victim, "commit": FORGED_COMMIT, "digest": attacker_digest, "submit": "f" * 16}
    forge.send(fleet, fake, task="scssq.record")

    # The victim submits for real: it compiles its own sources, and the mapping is true.
    src = make_src(tmp_path, {k: v.decode() for k, v in VICTIM.items()})
    out = tmp_path / "out"
    proc = fleet.scssq("submit", HONEST_COMMIT, *submit_args(src, out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, f"{proc.stderr}\n{fleet.logs()}"
    assert "green" in (out / "main.css").read_text()
    fetched = fleet.scssq(
        "fetch", HONEST_COMMIT, "--project", "demo", "--out", str(tmp_path / "f"), cwd=tmp_path
    )
    assert fetched.returncode == 0 and f"digest   {victim['digest']}" in fetched.stdout

    forged_map = fleet.redis.hgetall(f"{fleet.prefix}:commit:{forge.PROJECT}:{FORGED_COMMIT}")
    assert forged_map == {}, "a forged record mapped a commit to CSS of other sources"
    assert "no stored result proves key" in fleet.logs()
    true_record = {**victim, "commit": FORGED_COMMIT, "submit": "e" * 16}
    forge.send(fleet, true_record, task="scssq.record")
    deadline = time.monotonic() + 10
    while not fleet.redis.exists(f"{fleet.prefix}:commit:{forge.PROJECT}:{FORGED_COMMIT}"):
        assert time.monotonic() < deadline, f"the true record was not mapped\n{fleet.logs()}"
        time.sleep(0.05)
    assert len(fleet.engine_runs()) == 1
