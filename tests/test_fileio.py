"""Reads sized to the file (compiler_tasks.bundle.fileio): every byte to the end, or the limit
plus one, however the file's length and its ``fstat`` size disagree."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from compiler_tasks.bundle import fileio
from compiler_tasks.bundle.fileio import OPEN_READ, read_fd

DATA = bytes(range(256)) * 40  # 10 KiB


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "f").write_bytes(DATA)
    fd = os.open(tmp_path / "f", OPEN_READ)
    yield fd
    os.close(fd)


def test_a_file_as_long_as_its_size_is_read_in_one_call(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    read = os.read
    monkeypatch.setattr(os, "read", lambda f, n: calls.append(n) or read(f, n))
    assert read_fd(fd, len(DATA)) == DATA
    assert calls == [len(DATA) + 1]


@pytest.mark.parametrize("limit", [0, 1, len(DATA) - 1, len(DATA), len(DATA) + 5, None])
def test_the_limit_plus_one_at_most(fd: int, limit: int | None) -> None:
    want = DATA if limit is None else DATA[: limit + 1]
    assert read_fd(fd, len(DATA), limit) == want


@pytest.mark.parametrize("size", [0, 100, len(DATA) - 1])
def test_a_file_longer_than_its_size_said_is_read_to_its_end(fd: int, size: int) -> None:
    """It grew after the fstat (or it is a procfs file, whose size is 0)."""
    assert read_fd(fd, size) == DATA
    os.lseek(fd, 0, os.SEEK_SET)
    assert read_fd(fd, size, limit=len(DATA) - 10) == DATA[: len(DATA) - 9]


def test_a_file_shorter_than_its_size_said_is_read_to_its_end(fd: int) -> None:
    assert read_fd(fd, len(DATA) + 100) == DATA


def test_reads_cut_short_are_continued(fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    read = os.read
    monkeypatch.setattr(os, "read", lambda f, n: read(f, min(n, 1000)))
    monkeypatch.setattr(fileio, "CHUNK", 1000)
    assert read_fd(fd, len(DATA)) == DATA


def _read_path(path: str | Path, size: int) -> bytes:
    fd = os.open(path, OPEN_READ)
    try:
        return read_fd(fd, size)
    finally:
        os.close(fd)


def test_an_empty_file_is_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert _read_path(tmp_path / "empty", 0) == b""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="no procfs")
def test_a_procfs_file_whose_size_is_zero_is_read() -> None:
    assert _read_path("/proc/self/status", 0).startswith(b"Name:")
