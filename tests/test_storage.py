"""The artifact store, run against both backends: a local folder and a real S3 API (moto)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from compiler_tasks.errors import ArtifactMissing, ConfigError, InvalidInput, StoreError
from compiler_tasks.store import Store, open_store
from compiler_tasks.store.file import FileStore
from tests.support.s3 import aws_env, free_port

BINARY = bytes(range(256)) * 300 + b"\x00\r\n\xff"
BAD_PATHS = ["../x", "/abs", "a//b", "a/../b", "", ".", "a/./b", "a\\b", "a/b/"]


@dataclass
class Backend:
    store: Store
    #: Every object/file the backend holds, including anything outside the store's root/prefix.
    everything: Callable[[], set[str]]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def _bucket_keys(url: str) -> Callable[[], set[str]]:
    import boto3

    client = boto3.session.Session().client("s3")
    bucket = urlsplit(url).netloc

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}

    return keys


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        store = open_store(f"file://{tmp_path}/store")
        return Backend(store, lambda: _tree(tmp_path))
    url = request.getfixturevalue("s3_store_url")
    store = open_store(url, connect_timeout=2, read_timeout=10, retries=1)
    return Backend(store, _bucket_keys(url))


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def test_binary_round_trip(store: Store) -> None:
    store.put("artifacts/abc/main.css", BINARY)
    store.put("empty.css", b"")
    assert store.get("artifacts/abc/main.css") == BINARY
    assert store.get("empty.css") == b""


def test_put_overwrites(store: Store) -> None:
    store.put("a/site.css", b"body{color:red}")
    store.put("a/site.css", b"body{}")
    assert store.get("a/site.css") == b"body{}"


def test_get_missing_names_path_and_store(store: Store) -> None:
    with pytest.raises(ArtifactMissing) as info:
        store.get("nope/missing.css")
    assert "nope/missing.css" in str(info.value)
    assert store.url in str(info.value)


def test_exists_and_delete(store: Store) -> None:
    assert not store.exists("x/y.css")
    store.put("x/y.css", b"1")
    assert store.exists("x/y.css")
    assert not store.exists("x")  # a "directory" is not an object
    store.delete("x/y.css")
    assert not store.exists("x/y.css")
    with pytest.raises(ArtifactMissing):
        store.get("x/y.css")
    store.delete("x/y.css")  # absent: no error
    store.delete("never/was.css")


def test_put_once_never_overwrites(store: Store) -> None:
    assert store.put_once("k/manifest.json", b'{"first": 1}') is True
    assert store.put_once("k/manifest.json", b'{"second": 2}') is False
    assert store.get("k/manifest.json") == b'{"first": 1}'


def test_put_once_under_contention(store: Store) -> None:
    threads = 8
    for round_ in range(5):
        path = f"race/{round_}/manifest.json"
        results: list[bool | None] = [None] * threads
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads)

        def racer(
            i: int,
            path: str,
            results: list[bool | None],
            errors: list[BaseException],
            barrier: threading.Barrier,
        ) -> None:
            barrier.wait()
            try:
                results[i] = store.put_once(path, f"payload {i} ".encode() * 1000)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        workers = [
            threading.Thread(target=racer, args=(i, path, results, errors, barrier))
            for i in range(threads)
        ]
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=60)
        assert not errors
        assert results.count(True) == 1, results
        assert results.count(False) == threads - 1, results
        winner = results.index(True)
        assert store.get(path) == f"payload {winner} ".encode() * 1000


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_invalid_paths_refused_and_nothing_written(backend: Backend, bad: str) -> None:
    store = backend.store
    before = backend.everything()
    operations: list[Callable[[], object]] = [
        lambda: store.put(bad, b"evil"),
        lambda: store.put_once(bad, b"evil"),
        lambda: store.get(bad),
        lambda: store.exists(bad),
        lambda: store.delete(bad),
    ]
    for op in operations:
        with pytest.raises(InvalidInput):
            op()
    assert backend.everything() == before
    assert not os.path.exists("/abs")


def test_list_names_every_object_under_a_prefix_with_size_and_age(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.store
    before = time.time() - 5  # S3 keeps whole seconds; allow a little clock skew
    store.put("artifacts/k1/t/a.css", b"abc")
    store.put("artifacts/k1/manifest.json", b"{}")
    store.put_once("artifacts/k2/t/b/c.css", b"12345")
    store.put("bundles/d.tar.gz", b"z")
    if isinstance(store, FileStore):  # a half-written file or a link: never an object
        (Path(store.root) / "artifacts" / ".scssq-tmp:x").write_bytes(b"partial")
        (Path(store.root) / "artifacts" / "link.css").symlink_to(tmp_path)
    listed = {o.path: o for o in store.list("artifacts/")}
    assert {p: o.size for p, o in listed.items()} == {
        "artifacts/k1/t/a.css": 3,
        "artifacts/k1/manifest.json": 2,
        "artifacts/k2/t/b/c.css": 5,
    }
    assert all(before <= o.modified <= time.time() + 5 for o in listed.values())
    assert [o.path for o in store.list("bundles/")] == ["bundles/d.tar.gz"]
    assert list(store.list("nothing/")) == []
    store.delete("artifacts/k1/t/a.css")
    assert "artifacts/k1/t/a.css" not in {o.path for o in store.list("artifacts/")}


def test_check_of_healthy_store(store: Store) -> None:
    description = store.check()
    assert isinstance(description, str) and description


def test_local_store_files_are_readable_and_no_temp_files_remain(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/store")
    store.put("d/a.css", b"a")
    store.put("d/a.css", b"b")
    assert store.put_once("d/m.json", b"m")
    assert not store.put_once("d/m.json", b"n")
    assert sorted(os.listdir(tmp_path / "store" / "d")) == ["a.css", "m.json"]
    for name in ("a.css", "m.json"):
        mode = stat.S_IMODE((tmp_path / "store" / "d" / name).stat().st_mode)
        assert mode & 0o044 == 0o044, oct(mode)


def test_local_store_creates_its_directory(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "er" / "store"
    store = open_store(f"file://{root}")
    assert root.is_dir()
    assert str(root) in store.check()


def test_local_store_never_writes_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    store = open_store(f"file://{root}")
    store.put("a/b/c.css", b"1")
    store.put_once("a/m.json", b"2")
    store.delete("a/b/c.css")
    for bad in BAD_PATHS:
        with pytest.raises(InvalidInput):
            store.put(bad, b"evil")
    # A symlink planted inside the root must not lead writes out of it.
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError, match="outside"):
        store.put("link/x.css", b"evil")
    with pytest.raises(StoreError, match="outside"):
        store.put_once("link/x.css", b"evil")
    assert list(outside.iterdir()) == []
    (outside / "secret").write_bytes(b"worker's file")
    (root / "leak.css").symlink_to(outside / "secret")
    with pytest.raises(StoreError, match="outside"):
        store.get("leak.css")
    (outside / "secret").unlink()
    written = {p for p in tmp_path.rglob("*") if not p.is_dir()}
    assert all(root in p.parents for p in written), written


def test_local_store_unusable_root_names_the_store(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreError) as info:
        open_store(f"file://{blocker}/store")
    assert f"file://{blocker}/store" in str(info.value)


def test_s3_prefix_holds_every_object(s3_store_url: str) -> None:
    store = open_store(s3_store_url)
    store.put("a/b.css", b"1")
    store.put_once("a/m.json", b"2")
    assert _bucket_keys(s3_store_url)() == {"some-prefix/a/b.css", "some-prefix/a/m.json"}


def test_s3_unreachable_endpoint_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sekrit-do-not-show")
    store = open_store("s3://scssq-down/p", connect_timeout=0.5, read_timeout=1, retries=1)
    operations: list[Callable[[], object]] = [
        lambda: store.put("a.css", b"1"),
        lambda: store.put_once("a.css", b"1"),
        lambda: store.get("a.css"),
        lambda: store.exists("a.css"),
        lambda: store.delete("a.css"),
        store.check,
    ]
    for op in operations:
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            op()
        assert time.monotonic() - started < 10
        assert not isinstance(info.value, ArtifactMissing)
        message = str(info.value)
        assert "s3://scssq-down/p" in message
        assert "sekrit" not in message
        assert info.value.__cause__ is not None


def test_s3_missing_bucket_fails_check(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch, s3_endpoint)
    store = open_store("s3://scssq-no-such-bucket/p", retries=0)
    with pytest.raises(StoreError, match=r"scssq-no-such-bucket.*does not exist"):
        store.check()
    with pytest.raises(StoreError, match="s3://scssq-no-such-bucket/p"):
        store.put("a.css", b"1")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "store",
        "file://relative/dir",
        "s3://",
        "s3://Bad_Bucket/x",
        "s3://user:hunter2@bucket/x",
        "s3://bucket/../x",
    ],
)
def test_open_store_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert "hunter2" not in str(info.value)


def test_local_store_does_not_import_boto3(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from compiler_tasks.store import open_store\n"
        f"s = open_store('file://{tmp_path}')\n"
        "s.put('a.css', b'x'); assert s.get('a.css') == b'x'\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)
