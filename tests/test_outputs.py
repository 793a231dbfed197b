"""Writing a result's outputs under ``--out``, and reading artifacts checked against
their manifest's sha256, on a real local filesystem."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from cli.outputs import write_output
from compiler_tasks import storage
from compiler_tasks.errors import StoreError
from compiler_tasks.storage import FileStore, get_verified

CSS = b".a { color: red; }\n"
OLD = 1_000_000_000  # an mtime long ago (2001)


def test_an_output_that_already_holds_the_css_is_touched_not_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "main.css"
    target.write_bytes(CSS)
    os.utime(target, (OLD, OLD))

    def no_write(self: Path, data: bytes) -> int:
        raise AssertionError(f"{self} was rewritten")

    monkeypatch.setattr(Path, "write_bytes", no_write)
    write_output(target, CSS)
    assert target.read_bytes() == CSS
    assert os.stat(target).st_mtime > time.time() - 60  # newer than its sources, as a write


@pytest.mark.parametrize("before", [b".a { color: blue; }\n", b".a { color: r", b""])
def test_an_output_with_other_bytes_is_rewritten(tmp_path: Path, before: bytes) -> None:
    target = tmp_path / "main.css"
    target.write_bytes(before)  # same size, shorter, empty
    write_output(target, CSS)
    assert target.read_bytes() == CSS


def test_an_output_where_there_is_none_yet_is_written(tmp_path: Path) -> None:
    write_output(tmp_path / "main.css", CSS)
    assert (tmp_path / "main.css").read_bytes() == CSS


#: The racy window of the stores here: longer than any filesystem timestamp tick.
TICK = 0.05


def _stored(tmp_path: Path, data: bytes, settle: bool = True) -> tuple[FileStore, str]:
    store = FileStore(str(tmp_path / "store"))
    store.racy_ns = int(TICK * 1e9)
    store.put_once("out/main.css", data)
    if settle:
        time.sleep(TICK * 2)
    return store, hashlib.sha256(CSS).hexdigest()


def test_an_artifact_that_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    store, sha = _stored(tmp_path, b".a { color: RED; }\n")
    with pytest.raises(StoreError, match=r"out/main\.css does not match its manifest's sha256"):
        get_verified(store, "out/main.css", sha)


def test_an_artifact_changed_after_it_was_checked_is_checked_again(tmp_path: Path) -> None:
    """A store remembers the artifacts it checked by signature: a same-size rewrite in
    place with the old mtime put back is still caught (its ctime changed)."""
    store, sha = _stored(tmp_path, CSS)
    assert get_verified(store, "out/main.css", sha) == CSS
    assert len(store._verified) == 1  # remembered as checked
    assert get_verified(store, "out/main.css", sha) == CSS
    path = tmp_path / "store" / "out" / "main.css"
    before = os.stat(path)
    os.chmod(path, 0o644)
    path.write_bytes(b".a { color: RED; }\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for _ in range(2):  # and again: a refused artifact is not remembered either
        with pytest.raises(StoreError, match="does not match"):
            get_verified(store, "out/main.css", sha)


def test_a_remembered_artifact_is_not_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, sha = _stored(tmp_path, CSS)
    checks: list[str] = []
    real_verified = storage.verified

    def counting(data: bytes, sha256: str, path: str) -> bytes:
        checks.append(path)
        return real_verified(data, sha256, path)

    monkeypatch.setattr(storage, "verified", counting)
    for _ in range(3):
        assert get_verified(store, "out/main.css", sha) == CSS
    assert checks == ["out/main.css"]
    other = hashlib.sha256(b"other").hexdigest()  # another manifest's sha256: checked
    with pytest.raises(StoreError, match="does not match"):
        get_verified(store, "out/main.css", other)
    assert len(checks) == 2


def test_a_fresh_artifact_is_checked_every_time(tmp_path: Path) -> None:
    """Written within the racy window: a write in the same timestamp tick could keep its
    signature, so it is not remembered as checked."""
    store, sha = _stored(tmp_path, CSS, settle=False)
    for _ in range(2):
        assert get_verified(store, "out/main.css", sha) == CSS
    assert not store._verified
