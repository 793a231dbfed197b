"""Writing a result's outputs under ``--out``, and reading artifacts checked against
their manifest's sha256, on a real local filesystem."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from cli.outputs import write_output
from compiler_tasks.errors import InfrastructureError, InvalidInput, StoreError
from compiler_tasks.store import get_verified
from compiler_tasks.store.file import FileStore

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


def _stored(tmp_path: Path, data: bytes) -> tuple[FileStore, str]:
    store = FileStore(str(tmp_path / "store"))
    store.put_once("out/main.css", data)
    return store, hashlib.sha256(CSS).hexdigest()


def test_an_artifact_that_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    store, sha = _stored(tmp_path, b".a { color: RED; }\n")
    with pytest.raises(StoreError, match=r"out/main\.css does not match its manifest's sha256"):
        get_verified(store, "out/main.css", sha)


def test_an_artifact_changed_after_it_was_checked_is_checked_again(tmp_path: Path) -> None:
    """A same-size rewrite in place with the old mtime put back is caught."""
    store, sha = _stored(tmp_path, CSS)
    assert get_verified(store, "out/main.css", sha) == CSS
    path = tmp_path / "store" / "out" / "main.css"
    before = os.stat(path)
    os.chmod(path, 0o644)
    path.write_bytes(b".a { color: RED; }\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for _ in range(2):  # and again
        with pytest.raises(StoreError, match="does not match"):
            get_verified(store, "out/main.css", sha)


@pytest.mark.parametrize("swap", ["file", "folder"])
def test_a_link_out_of_the_store_swapped_in_after_the_check_is_refused(
    tmp_path: Path, swap: str
) -> None:
    """Even with the same bytes, a link leading out of the store is refused: the path is
    held to the store on every read."""
    store, sha = _stored(tmp_path, CSS)
    assert get_verified(store, "out/main.css", sha) == CSS
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "main.css").write_bytes(CSS)
    folder = tmp_path / "store" / "out"
    if swap == "file":
        (folder / "main.css").unlink()
        (folder / "main.css").symlink_to(outside / "main.css")
    else:
        (folder / "main.css").unlink()
        folder.rmdir()
        folder.symlink_to(outside)
    with pytest.raises(StoreError, match="leads outside the store"):
        get_verified(store, "out/main.css", sha)


def test_a_fifo_in_place_of_an_artifact_is_refused_not_waited_on(tmp_path: Path) -> None:
    store, sha = _stored(tmp_path, CSS)
    assert get_verified(store, "out/main.css", sha) == CSS
    path = tmp_path / "store" / "out" / "main.css"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(StoreError, match="not a regular file"):
        get_verified(store, "out/main.css", sha)
    with pytest.raises(StoreError, match="not a regular file"):
        store.get("out/main.css")


def test_an_output_in_a_folder_not_made_yet_is_written(tmp_path: Path) -> None:
    write_output(tmp_path / "css" / "themes" / "dark.css", CSS)
    assert (tmp_path / "css" / "themes" / "dark.css").read_bytes() == CSS


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_an_output_path_that_is_not_a_file_is_refused_not_waited_on(
    tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "main.css"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    with pytest.raises(InvalidInput, match=r"main\.css' exists and is not a file"):
        write_output(target, CSS)


def test_an_output_that_cannot_be_written_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "css").write_text("a file where the folder should be")
    with pytest.raises(InvalidInput, match=r"cannot write output '.*css/main\.css'.*--out"):
        write_output(tmp_path / "css" / "main.css", CSS)


def test_an_output_linked_to_a_device_is_written_to_not_read(tmp_path: Path) -> None:
    (tmp_path / "main.css").symlink_to("/dev/null")
    write_output(tmp_path / "main.css", CSS)


def test_a_full_disk_is_an_infrastructure_error_naming_the_output(tmp_path: Path) -> None:
    (tmp_path / "main.css").symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(InfrastructureError, match=r"cannot write output '.*main\.css'") as e:
        write_output(tmp_path / "main.css", CSS)
    assert not isinstance(e.value, InvalidInput)
