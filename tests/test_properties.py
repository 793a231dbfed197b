"""Property tests (hypothesis): the archive reader, the validators, the import resolver.

* Whatever bytes arrive, :func:`bundle.read_archive` returns a bundle of plain
  relative files within the limits or raises BundleError, never anything else;
  writing what it returns never creates a file outside the fresh root.
* A value the validators accept is safe in a Redis key and an S3 path: exactly
  the documented alphabet, no separators, no trailing newline; a refusal's
  message stays short whatever the value.
* :func:`resolver.resolve` returns a file inside the bundle root (by real path)
  or refuses, whatever the import target and whatever links the bundle holds.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from compiler_tasks.bundle.collect import read_archive, write_tree
from compiler_tasks.bundle.model import Bundle
from compiler_tasks.engines import resolver
from compiler_tasks.errors import BundleError, InvalidInput
from compiler_tasks.keys import (
    MAX_PATH_LEN,
    RedisKeys,
    artifact_dir,
    validate_commit,
    validate_key,
    validate_project,
    validate_relpath,
)
from tests.hostile.forge import targz

LIMITS = {"max_bytes": 4096, "max_files": 6}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

_LONG = "x" * 120
_NAME_PARTS = st.sampled_from(
    ["a", "b.scss", "_c.scss", ".", "..", "", "/", "\\", "\x00", " ", "\n", ":", "*", "ü", _LONG]
)
_PLAIN = st.sampled_from(["main.scss", "a/b.scss", "lib/_x.scss", "c.css", "d/e.sass"])
NAMES = st.one_of(
    _PLAIN,
    _PLAIN,
    st.lists(_NAME_PARTS, min_size=1, max_size=6).map("".join),
    st.lists(_NAME_PARTS, min_size=1, max_size=4).map("/".join),
    st.sampled_from(["/etc/passwd", "../x.scss", "a/../../x.scss", "./a.scss", "a//b.scss"]),
)
KINDS = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.REGTYPE,
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.CONTTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.DIRTYPE,
        tarfile.FIFOTYPE,
    ]
)
MEMBERS = st.lists(
    st.tuples(NAMES, KINDS, st.binary(max_size=1500), st.sampled_from(["", "/etc/passwd", "../x"])),
    max_size=8,
)
FORMATS = st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])


def _build(members: list[tuple[str, bytes, bytes, str]], fmt: int) -> bytes:
    infos = []
    for name, kind, data, target in members:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        info.size = len(data) if kind in tarfile.REGULAR_TYPES else 0
        infos.append((info, data if kind in tarfile.REGULAR_TYPES else None))
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb") as gz,
        tarfile.open(fileobj=gz, mode="w", format=fmt) as tar,
    ):
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _check_bundle_and_write(bundle: Bundle) -> None:
    event("accepted")
    assert len(bundle.files) <= LIMITS["max_files"]
    assert sum(len(d) for d in bundle.files.values()) <= LIMITS["max_bytes"]
    for path in bundle.files:
        assert validate_relpath(path) == path
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "task" / "src"
        root.mkdir(parents=True)
        write_tree(bundle, root)
        written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        assert written == set(bundle.files)
        assert sorted(os.listdir(tmp)) == ["task"] and os.listdir(Path(tmp) / "task") == ["src"]
        for path in root.rglob("*"):
            assert not path.is_symlink()
            assert os.path.realpath(path).startswith(str(root.resolve()) + os.sep)


@FAST
@given(MEMBERS, FORMATS)
def test_archive_reader_accepts_only_plain_files_and_writes_only_inside(members, fmt) -> None:
    try:
        archive = _build(members, fmt)
    except (ValueError, UnicodeError, tarfile.TarError):
        assume(False)  # a member tarfile itself cannot write in this format
        return
    try:
        bundle = read_archive(archive, **LIMITS)
    except BundleError:
        return
    _check_bundle_and_write(bundle)


@FAST
@given(st.binary(max_size=2048))
def test_archive_reader_on_arbitrary_bytes_raises_only_bundle_errors(data: bytes) -> None:
    try:
        bundle = read_archive(data, **LIMITS)
    except BundleError:
        return
    _check_bundle_and_write(bundle)


@FAST
@given(st.data())
def test_archive_reader_on_corrupted_archives(data: st.DataObject) -> None:
    archive = bytearray(
        Bundle.from_files({"main.scss": b".a { b: c; }", "lib/_x.scss": b"$x: 1;"}).archive()
    )
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(archive) - 1))
        archive[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(archive)))
    try:
        bundle = read_archive(bytes(archive[:cut]), **LIMITS)
    except BundleError:
        return
    _check_bundle_and_write(bundle)


def test_an_attacker_written_plain_archive_is_accepted() -> None:
    """Refusals above are about the members, not about who wrote the archive."""
    archive = targz([(tarfile.TarInfo("a.scss"), b"")])
    assert read_archive(archive, **LIMITS).files == {"a.scss": b""}


_KEY_SAFE = re.compile(r"[A-Za-z0-9._:-]+")


@FAST
@given(st.text(max_size=200) | st.sampled_from(["abcdef1\n", "a" * 64 + "\n", " " + "a" * 40]))
def test_commit_validator(value: str) -> None:
    try:
        commit = validate_commit(value)
    except InvalidInput as e:
        assert len(str(e)) < 300 and "\n" not in str(e)
        assert not re.fullmatch(r"[0-9a-f]{7,64}", value.strip().lower())
        return
    assert re.fullmatch(r"[0-9a-f]{7,64}", commit)
    assert _KEY_SAFE.fullmatch(RedisKeys("p").commit("proj", commit))


@FAST
@given(st.text(max_size=120) | st.sampled_from(["a" * 64 + "\n", "A" * 64]))
def test_key_validator(value: str) -> None:
    try:
        key = validate_key(value)
    except InvalidInput as e:
        assert len(str(e)) < 300 and "\n" not in str(e)
        return
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert _KEY_SAFE.fullmatch(RedisKeys("p").result(key))
    assert validate_relpath(artifact_dir(key) + "/manifest.json")


@FAST
@given(st.text(max_size=120) | st.sampled_from(["demo\n", "../x", "a b", "*"]))
def test_project_validator(value: str) -> None:
    try:
        project = validate_project(value)
    except InvalidInput as e:
        assert len(str(e)) < 400 and "\n" not in str(e)
        return
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", project)
    assert _KEY_SAFE.fullmatch(RedisKeys("p").commit(project, "a" * 40))


@FAST
@given(NAMES | st.text(max_size=80))
def test_relpath_validator(value: str) -> None:
    try:
        path = validate_relpath(value)
    except InvalidInput as e:
        assert len(str(e)) < 400
        return
    assert 0 < len(path) <= MAX_PATH_LEN
    parts = path.split("/")
    assert all(p not in ("", ".", "..") for p in parts)
    assert not any(c in path for c in "\\\x00\n\r:*?")
    assert os.path.normpath("/root/" + path).startswith("/root/")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A bundle root with partials, load paths and links leading in and out."""
    base = tmp_path_factory.mktemp("resolver")
    outside = base / "outside"
    outside.mkdir()
    (outside / "_secret.scss").write_text("$secret: 1;")
    root = base / "root"
    for rel in ["main.scss", "a/_b.scss", "a/c/_index.scss", "lib/_x.scss", "_x.css", "d/e.sass"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    (root / "a" / "_out.scss").symlink_to(outside / "_secret.scss")
    (root / "outdir").symlink_to(outside)
    (root / "a" / "up").symlink_to(root)
    return str(root.resolve()), str(outside.resolve())


_TARGET_PARTS = st.sampled_from(
    ["a", "b", "c", "x", "lib", "outdir", "secret", "out", "up", "d", "e", "..", ".", "_b", "main"]
)
TARGETS = st.one_of(
    st.lists(_TARGET_PARTS, min_size=1, max_size=6).map("/".join),
    st.lists(_TARGET_PARTS, min_size=1, max_size=6).map(lambda p: "/" + "/".join(p)),
    st.text(max_size=30),
    st.sampled_from(["file:///etc/passwd", "FILE:main", "../../../../etc/passwd", "a/../../x"]),
)


@FAST
@given(target=TARGETS, importer=st.sampled_from(["", "a", "a/c", "lib", "d"]))
def test_resolved_imports_stay_inside_the_root(tree: tuple[str, str], target, importer) -> None:
    root, outside = tree
    importer_dir = os.path.join(root, importer) if importer else root
    try:
        found = resolver.resolve(target, importer_dir, root, (os.path.join(root, "lib"),))
    except resolver.ImportRefused as e:
        assert outside not in e.message
        return
    assert resolver.is_inside(found.path, root)
    assert resolver.is_inside(os.path.realpath(found.path), root)
    assert os.path.isfile(found.path)
    assert found.rel == os.path.relpath(found.path, root) and not found.rel.startswith("..")
