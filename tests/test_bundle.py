"""Bundles: what a submit collects, and what a worker accepts from an archive."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from compiler_tasks.bundle.collect import collect, read_archive, write_tree
from compiler_tasks.bundle.model import Bundle
from compiler_tasks.errors import BundleError
from tests.support.archives import regular, special, targz

LIMITS = {"max_bytes": 1 << 20, "max_files": 100}


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_collect_takes_stylesheets_and_imported_css_only(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "scss/main.scss": '@import "vendor/reset";\n@import "theme";\n',
            "scss/_theme.sass": "a\n  color: red\n",
            "scss/vendor/reset.css": "html{margin:0}",
            "scss/unrelated.css": "x{}",
            "README.md": "docs",
            ".git/HEAD": "ref",
            ".git/x.scss": "",
            "out/main.css": "old output",
            "out/stale.scss": "",
        },
    )
    bundle = collect(tmp_path, exclude=[tmp_path / "out"], **LIMITS)
    assert sorted(bundle.files) == ["scss/_theme.sass", "scss/main.scss", "scss/vendor/reset.css"]


def test_digest_ignores_the_output_folder_and_mtimes(tmp_path: Path) -> None:
    _tree(tmp_path, {"main.scss": "a{b:c}"})
    first = collect(tmp_path, exclude=[tmp_path / "out"], **LIMITS).digest
    _tree(tmp_path, {"out/main.css": "a{b:c}", "out/x.scss": "changed"})
    os.utime(tmp_path / "main.scss", (0, 0))
    assert collect(tmp_path, exclude=[tmp_path / "out"], **LIMITS).digest == first
    (tmp_path / "main.scss").write_text("a{b:d}")
    assert collect(tmp_path, exclude=[tmp_path / "out"], **LIMITS).digest != first


def test_links_followed_only_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    root = tmp_path / "root"
    _tree(outside, {"secret.scss": "$secret: 1;"})
    _tree(root, {"main.scss": "a{b:c}", "lib/_x.scss": "$x: 1;"})
    (root / "escape.scss").symlink_to(outside / "secret.scss")
    (root / "escape-dir").symlink_to(outside)
    (root / "alias").symlink_to(root / "lib")
    (root / "loop").symlink_to(root)
    bundle = collect(root, exclude=[], **LIMITS)
    assert "escape.scss" not in bundle.files
    assert not any(p.startswith("escape-dir") for p in bundle.files)
    assert bundle.files["alias/_x.scss"] == b"$x: 1;"


def test_limits_are_enforced(tmp_path: Path) -> None:
    _tree(tmp_path, {f"f{i}.scss": "a{}" for i in range(5)})
    with pytest.raises(BundleError, match="SCSSQ_MAX_BUNDLE_FILES"):
        collect(tmp_path, exclude=[], max_bytes=1 << 20, max_files=3)
    with pytest.raises(BundleError, match="SCSSQ_MAX_BUNDLE_BYTES"):
        collect(tmp_path, exclude=[], max_bytes=8, max_files=100)


def test_empty_source_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no \.scss"):
        collect(tmp_path, exclude=[], **LIMITS)


def test_archive_round_trip_is_deterministic(tmp_path: Path) -> None:
    bundle = Bundle.from_files({"b.scss": b"b", "a/x.scss": b"\xff binary ok"})
    assert bundle.archive() == Bundle.from_files(dict(bundle.files)).archive()
    back = read_archive(bundle.archive(), **LIMITS)
    assert back.files == bundle.files and back.digest == bundle.digest
    write_tree(back, tmp_path)
    assert (tmp_path / "a" / "x.scss").read_bytes() == b"\xff binary ok"


PLAIN = {"main.scss": b"a{}", "lib/_x.scss": b"x" * 1000, "empty.css": b""}
#: A name a plain ustar header cannot hold (over 100 bytes): tarfile writes pax headers.
PAX = {"d/" + "n" * 120 + ".scss": b"long", "e/" + "n" * 93 + ".scss": b"100 bytes"}


@pytest.mark.parametrize("files", [PLAIN, {**PLAIN, **PAX}], ids=["ustar", "pax"])
def test_tarfile_reads_the_archive_back_member_for_member(files: dict[str, bytes]) -> None:
    archive = Bundle.from_files(files).archive()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:  # checks checksums
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(files)
        for member in members:
            assert member.isreg() and member.mode == 0o644 and member.mtime == 0
            assert member.uid == member.gid == 0 and member.uname == member.gname == ""
            fh = tar.extractfile(member)
            assert fh is not None and fh.read() == files[member.name]
    assert read_archive(archive, **LIMITS).files == files
    assert len(archive) > 0 and archive == Bundle.from_files(dict(files)).archive()


def test_a_truncated_archive_is_refused() -> None:
    archive = Bundle.from_files(PLAIN).archive()
    with pytest.raises(BundleError, match="unreadable"):  # cut inside a member's data
        read_archive(archive[: len(archive) // 2], **LIMITS)


@pytest.mark.parametrize(
    "members,reason",
    [
        ([regular("/etc/evil.scss")], "relative"),
        ([regular("../evil.scss")], "plain relative"),
        ([regular("a/../../evil.scss")], "plain relative"),
        ([special("link.scss", tarfile.SYMTYPE, "/etc/passwd")], "not a regular file"),
        (
            [regular("a.scss"), special("hard.scss", tarfile.LNKTYPE, "/etc/passwd")],
            "not a regular file",
        ),
        ([special("dev", tarfile.CHRTYPE)], "not a regular file"),
        ([regular("a.scss"), regular("a.scss", b"y")], "twice"),
        ([regular("lib"), regular("lib/_x.scss")], "'lib' is both a file and a folder"),
        ([regular("x" * 256 + ".scss")], "name part over 255 bytes"),
    ],
)
def test_hostile_archives_refused(members: list, reason: str, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=reason):
        read_archive(targz(members), **LIMITS)


def test_decompression_and_file_count_bombs_stop_early() -> None:
    bomb = targz([regular("big.scss", b"\0" * (4 << 20))])
    assert len(bomb) < 10_000
    with pytest.raises(BundleError, match="expands beyond"):
        read_archive(bomb, **LIMITS)
    many = targz([regular(f"f{i}.scss") for i in range(101)])
    with pytest.raises(BundleError, match="more than 100 files"):
        read_archive(many, **LIMITS)


def test_garbage_archive_is_a_bundle_error() -> None:
    with pytest.raises(BundleError, match="unreadable"):
        read_archive(b"not a tarball", **LIMITS)
