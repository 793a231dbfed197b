"""Hostile archives sent to a real worker as crafted compile requests.

Every one is refused with a clear message that reaches its submitter at once
(exit 2 for ``scssq submit``), before anything is written outside a fresh
per-task directory: nothing is compiled, cached, mapped or left locked, and no
file outside the worker's temporary directory is created or read.
"""

from __future__ import annotations

import os
import secrets
import tarfile
import time
from pathlib import Path

import pytest

from compiler_tasks.bundle import archive as archive_format
from compiler_tasks.keys import bundle_path
from tests.hostile import forge
from tests.hostile.forge import regular, special

pytestmark = pytest.mark.integration

MAX_FILES = 50
MAX_BYTES = 1 << 20


def test_hostile_archives_are_refused_by_a_real_worker(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=0, max_bundle_bytes=MAX_BYTES, max_bundle_files=MAX_FILES)
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    fleet.start_worker(1, extra_env={"TMPDIR": str(worker_tmp)})
    token = secrets.token_hex(16)
    secret = tmp_path / "secret.scss"
    secret.write_text(f".leak {{ content: '{token}'; }}\n")
    victim = tmp_path / "victim.scss"
    victim.write_text("unchanged")
    landing = tmp_path / "pwned.scss"
    escapes = ["../../../pwned.scss", "a/../../../pwned.scss"]
    cases: dict[str, tuple[bytes, str]] = {
        "absolute path": (forge.targz([regular(str(landing))]), "relative to the bundle root"),
        "overwrite by absolute path": (
            forge.targz([regular(str(victim), b"owned")]),
            "relative to the bundle root",
        ),
        "dot-dot": (forge.targz([regular(escapes[0])]), "plain relative path"),
        "dot-dot inside a path": (forge.targz([regular(escapes[1])]), "plain relative path"),
        "symlink out": (
            forge.targz([special("main.scss", tarfile.SYMTYPE, str(secret))]),
            "'main.scss' is not a regular file",
        ),
        "write through a symlinked directory": (
            forge.targz(
                [special("lib", tarfile.SYMTYPE, str(tmp_path)), regular("lib/pwned.scss")]
            ),
            "'lib' is not a regular file",
        ),
        "hard link out": (
            forge.targz([regular("main.scss"), special("x.scss", tarfile.LNKTYPE, str(secret))]),
            "'x.scss' is not a regular file",
        ),
        "character device": (
            forge.targz([special("main.scss", tarfile.CHRTYPE)]),
            "not a regular file",
        ),
        "fifo": (forge.targz([special("main.scss", tarfile.FIFOTYPE)]), "not a regular file"),
        "duplicate names": (
            forge.targz([regular("main.scss"), regular("main.scss", b".evil { x: y; }")]),
            "'main.scss' appears twice",
        ),
        "decompression bomb": (
            forge.targz([regular("main.scss", b"\0" * (16 * MAX_BYTES))]),
            f"expands beyond {MAX_BYTES} bytes",
        ),
        "pax header bomb": (forge.pax_header_bomb(64 * MAX_BYTES), "expands beyond"),
        "file-count bomb": (
            forge.targz([regular(f"f{i}.scss") for i in range(MAX_FILES + 1)]),
            f"more than {MAX_FILES} files",
        ),
        "folder bomb": (
            forge.targz([regular(f"d{i}/" + "a/" * 9 + "x.scss") for i in range(MAX_FILES)]),
            f"holds {MAX_FILES * 10} folders, more than {4 * MAX_FILES}",
        ),
        "decompression bomb in the client's own layout": (
            archive_format.pack({"main.scss": b"\0" * (16 * MAX_BYTES)}),
            f"expands beyond {MAX_BYTES} bytes",
        ),
        "garbage": (b"\x1f\x8b not really gzip", "unreadable"),
    }
    for name, (archive, reason) in cases.items():
        job = forge.request(fleet, archive=archive)
        started = time.monotonic()
        result = forge.send_and_wait(fleet, job)
        assert result["status"] == "failed", name
        assert result["kind"] == "invalid" and forge.exit_code(result) == 2, (name, result)
        assert result["for"] == job["submit"], name
        assert reason in result["message"], (name, result["message"])
        assert "the worker refused the bundle" in result["message"], name
        assert time.monotonic() - started < 10, f"{name}: the refusal was slow"

    # The same through the store (bundles above SCSSQ_INLINE_BUNDLE_MAX): an object that
    # does not hash to its name (oversized: not read whole; hostile) is treated as absent,
    # since anyone may have written it: answered to that submitter alone, at once.
    store = tmp_path / "store"
    oversized = forge.request(fleet, archive=b"", inline=False)
    big = store / bundle_path(oversized["digest"])
    big.parent.mkdir(parents=True, exist_ok=True)
    big.write_bytes(os.urandom(2 * MAX_BYTES))
    linked = forge.request(fleet, archive=b"", inline=False)
    (store / bundle_path(linked["digest"])).write_bytes(cases["symlink out"][0])
    for job in (oversized, linked):
        result = forge.send_and_wait(fleet, job)
        assert result["kind"] == "infra" and result["for"] == job["submit"], result
        assert "no bundle" in result["message"] and "hashes to its name" in result["message"]

    # Malformed requests are refused to their submitter too, naming the field.
    for field, value, reason in [
        ("inline", "not base64!", "not base64"),
        ("options", {"entries": ["/etc/passwd.scss"]}, "relative to the bundle root"),
        ("options", {"entries": ["main.scss"], "load_paths": ["../.."]}, "load path"),
        ("commit", "../x", "'../x'"),
    ]:
        job = forge.request(fleet, files={"main.scss": b".a { b: c; }"})
        job[field] = value
        result = forge.send_and_wait(fleet, job)
        assert result["kind"] == "invalid" and result["for"] == job["submit"], field
        assert reason in result["message"], (field, result["message"])

    # Nothing compiled, cached, mapped or locked; nothing written or read outside.
    assert fleet.engine_runs() == []
    for kind in ("result", "lock", "commit", "conflict"):
        assert fleet.redis.keys(f"{fleet.prefix}:{kind}:*") == [], kind
    assert not landing.exists() and victim.read_text() == "unchanged"
    task_dir = worker_tmp / "scssq-x" / "src"
    for rel in escapes:
        assert not Path(os.path.normpath(task_dir / rel)).exists(), rel
    assert sorted(p.name for p in tmp_path.rglob("pwned.scss")) == []
    assert list(worker_tmp.glob("scssq-*")) == [], "a per-task directory was left behind"
    assert token not in fleet.logs()

    # Control: the same path with an honest bundle compiles (the refusals were real).
    good = forge.request(fleet, files={"main.scss": b".a { b: c; }\n"})
    result = forge.send_and_wait(fleet, good)
    assert result["status"] == "ok", result
    assert len(fleet.engine_runs()) == 1
