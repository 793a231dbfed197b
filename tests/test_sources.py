"""The source cache of a long-lived client: files that did not change are not read again,
and a file that changed, however it changed, always is."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from compiler_tasks.bundle import signatures, sources
from compiler_tasks.bundle.collect import collect
from compiler_tasks.bundle.model import Bundle
from compiler_tasks.bundle.signatures import local_devices
from compiler_tasks.bundle.sources import Names, Resolution, SourceCache, Trail, identities, resolve
from compiler_tasks.errors import BundleError

LIMITS = {"max_bytes": 1 << 20, "max_files": 100}
#: Longer than any filesystem timestamp tick here (the kernel's coarse clock).
TICK = 0.05


def _tree(root: Path) -> None:
    (root / "lib").mkdir(parents=True, exist_ok=True)
    (root / "main.scss").write_text('@import "lib/colors";\n@import "reset";\n.a { color: $c; }\n')
    (root / "lib" / "_colors.scss").write_text("$c: #aa0000;\n")
    (root / "reset.css").write_text("html { margin: 0 }\n")


def _settled_cache(root: Path) -> SourceCache:
    """A cache that already read ``root`` once, with files older than its racy window."""
    time.sleep(TICK * 2)
    cache = SourceCache(racy_ns=int(TICK * 1e9))
    collect(root, exclude=[], cache=cache, **LIMITS)
    assert cache.reads == 3
    return cache


def test_unchanged_files_are_not_read_again_and_the_bundle_is_the_same(tmp_path: Path) -> None:
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    again = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert cache.reads == 3
    plain = collect(tmp_path, exclude=[], **LIMITS)
    assert again.digest == plain.digest and again.files == plain.files


def test_a_same_size_rewrite_with_its_mtime_put_back_is_read_again(tmp_path: Path) -> None:
    _tree(tmp_path)
    colors = tmp_path / "lib" / "_colors.scss"
    before = os.stat(colors)
    cache = _settled_cache(tmp_path)
    first = collect(tmp_path, exclude=[], cache=cache, **LIMITS).digest
    colors.write_text("$c: #00aa00;\n")  # same size; then the old mtime is restored
    os.utime(colors, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(colors).st_size == before.st_size
    bundle = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert bundle.files["lib/_colors.scss"] == b"$c: #00aa00;\n"
    assert bundle.digest != first
    assert bundle.digest == collect(tmp_path, exclude=[], **LIMITS).digest


def test_a_file_replaced_by_a_rename_is_read_again(tmp_path: Path) -> None:
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    new = tmp_path / "new.tmp"
    new.write_text("$c: #0000aa;\n")
    os.replace(new, tmp_path / "lib" / "_colors.scss")
    bundle = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert bundle.files["lib/_colors.scss"] == b"$c: #0000aa;\n"


def test_files_changed_within_the_racy_window_are_never_trusted(tmp_path: Path) -> None:
    _tree(tmp_path)
    cache = SourceCache()  # the default window: these files were written just now
    for _ in range(3):
        collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert cache.reads == 9


def test_new_and_removed_files_change_the_bundle(tmp_path: Path) -> None:
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    (tmp_path / "extra.scss").write_text(".x { y: z; }\n")
    (tmp_path / "reset.css").unlink()
    bundle = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert sorted(bundle.files) == ["extra.scss", "lib/_colors.scss", "main.scss"]


def test_limits_still_apply_to_remembered_files(tmp_path: Path) -> None:
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    with pytest.raises(BundleError, match="exceeds 20 bytes"):
        collect(tmp_path, exclude=[], cache=cache, max_bytes=20, max_files=100)
    with pytest.raises(BundleError, match="more than 2 files"):
        collect(tmp_path, exclude=[], cache=cache, max_bytes=1 << 20, max_files=2)


def test_the_cache_keeps_a_bounded_number_of_roots(tmp_path: Path) -> None:
    cache = SourceCache(max_roots=2, racy_ns=0)
    roots = [tmp_path / name for name in ("a", "b", "c")]
    for root in roots:
        _tree(root)
        collect(root, exclude=[], cache=cache, **LIMITS)
    assert len(cache._roots) == 2 and str(roots[0]) not in cache._roots


def _local(path: Path) -> bool:
    return local_devices([os.stat(path).st_dev])


@pytest.fixture
def local_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder on a filesystem known to be local, where tree memos are made: the
    temp folder, else a tmpfs (``/dev/shm``) when the temp folder's mount is not local or
    not listed at all (a chroot hides the mounts outside it)."""
    if _local(tmp_path):
        yield tmp_path
        return
    shm = Path("/dev/shm")
    if not (shm.is_dir() and _local(shm)):
        pytest.skip("no folder on a filesystem known to be local (temp folder, /dev/shm)")
    path = Path(tempfile.mkdtemp(prefix="scssq-test-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_unchanged_tree_is_answered_by_its_memo(local_dir: Path) -> None:
    tmp_path = local_dir
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    first = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert cache.tree_hits == 1 and cache.reads == 3
    assert collect(tmp_path, exclude=[], cache=cache, **LIMITS) is first
    assert cache.tree_hits == 2
    # Other limits or another excluded folder make another bundle: no memo for them.
    collect(tmp_path, exclude=[tmp_path / "lib"], cache=cache, **LIMITS)
    assert cache.tree_hits == 2


def test_a_file_added_deep_in_a_remembered_tree_is_bundled(local_dir: Path) -> None:
    tmp_path = local_dir
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert cache.tree_hits == 1
    (tmp_path / "lib" / "more.scss").write_text(".m { n: o; }\n")  # only lib/ changes
    bundle = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert bundle.files["lib/more.scss"] == b".m { n: o; }\n"
    assert cache.tree_hits == 1
    (tmp_path / "lib" / "more.scss").unlink()
    assert "lib/more.scss" not in collect(tmp_path, exclude=[], cache=cache, **LIMITS).files


@pytest.mark.parametrize("by_folder", [True, False], ids=["dir_fd", "whole paths"])
def test_a_remembered_tree_sees_a_file_edited_or_a_folder_swapped_deep_in_it(
    local_dir: Path, by_folder: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tree check stats each file relative to its folder (``dir_fd``) where it can, by
    its whole path elsewhere; either way a changed file or folder is read again."""
    monkeypatch.setattr(sources, "_BY_FOLDER", by_folder and sources._BY_FOLDER)
    root = local_dir
    _tree(root)
    cache = _settled_cache(root)
    collect(root, exclude=[], cache=cache, **LIMITS)
    assert cache.tree_hits == 1
    (root / "lib" / "_colors.scss").write_text("$c: #bb0000;\n")  # same size, new bytes
    time.sleep(TICK * 2)
    assert collect(root, exclude=[], cache=cache, **LIMITS).files["lib/_colors.scss"] == (
        b"$c: #bb0000;\n"
    )
    collect(root, exclude=[], cache=cache, **LIMITS)
    assert cache.tree_hits == 2  # the tree was walked after the edit, then remembered again
    # lib/ swapped for another folder with the same names and sizes
    (root / "lib").rename(root / "old-lib")
    (root / "lib").mkdir()
    (root / "lib" / "_colors.scss").write_text("$c: #cc0000;\n")
    time.sleep(TICK * 2)
    swapped = collect(root, exclude=[root / "old-lib"], cache=cache, **LIMITS)
    assert swapped.files["lib/_colors.scss"] == b"$c: #cc0000;\n"
    # lib/ replaced by a file: the check fails cleanly and the walk says what it finds
    assert collect(root, exclude=[root / "old-lib"], cache=cache, **LIMITS) is swapped
    hits = cache.tree_hits
    shutil.rmtree(root / "lib")
    (root / "lib").write_text("not a folder\n")
    time.sleep(TICK * 2)
    walked = collect(root, exclude=[root / "old-lib"], cache=cache, **LIMITS)
    assert "lib/_colors.scss" not in walked.files and cache.tree_hits == hits


def test_a_folder_changed_within_the_racy_window_is_listed_again(local_dir: Path) -> None:
    tmp_path = local_dir
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    (tmp_path / "lib" / "more.scss").write_text(".m { n: o; }\n")
    for _ in range(3):  # lib/ (and the new file) changed just now: no memo yet
        collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert cache.tree_hits == 0
    time.sleep(TICK * 2)
    collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert collect(tmp_path, exclude=[], cache=cache, **LIMITS).files["lib/more.scss"]
    assert cache.tree_hits == 1


def test_a_tree_with_a_link_is_walked_every_time(local_dir: Path) -> None:
    """A link's target can change with nothing in the tree changing."""
    tmp_path = local_dir
    _tree(tmp_path)
    (tmp_path / "theme").symlink_to(tmp_path / "lib")
    time.sleep(TICK * 2)
    cache = SourceCache(racy_ns=int(TICK * 1e9))
    for _ in range(3):
        bundle = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert "theme/_colors.scss" in bundle.files and cache.tree_hits == 0


def test_only_filesystems_known_to_be_local_count_as_local(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "31 27 0:45 / /mnt/nfs rw,relatime shared:9 - nfs4 server:/export rw,vers=4.2\n"
        "32 27 0:46 / /mnt/my\\040disk rw - fuse.sshfs host:/ rw\n"
        "33 27 0:47 / /dev/shm rw - tmpfs tmpfs rw\n"
    )
    ext4, nfs, sshfs, tmpfs = (
        os.makedev(8, 1),
        os.makedev(0, 45),
        os.makedev(0, 46),
        os.makedev(0, 47),
    )
    assert local_devices([ext4, tmpfs], str(mountinfo))
    assert not local_devices([ext4, nfs], str(mountinfo))
    assert not local_devices([sshfs], str(mountinfo))
    assert not local_devices([os.makedev(9, 9)], str(mountinfo))  # not mounted: unknown
    assert not local_devices([ext4], str(tmp_path / "absent"))  # no /proc: unknown


def test_a_tree_on_a_filesystem_not_known_to_be_local_is_walked_every_time(
    local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = local_dir
    _tree(tmp_path / "src")
    dev = os.stat(tmp_path / "src").st_dev
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"31 27 {os.major(dev)}:{os.minor(dev)} / /mnt rw - nfs4 server:/export rw\n"
    )
    monkeypatch.setattr(signatures, "MOUNTINFO", str(mountinfo))
    time.sleep(TICK * 2)
    cache = SourceCache(racy_ns=int(TICK * 1e9))
    for _ in range(3):
        collect(tmp_path / "src", exclude=[], cache=cache, **LIMITS)
    assert cache.tree_hits == 0 and cache.reads == 3  # walked, files still not re-read


def test_new_folders_and_a_folder_replaced_by_a_file_are_seen(local_dir: Path) -> None:
    tmp_path = local_dir
    _tree(tmp_path)
    cache = _settled_cache(tmp_path)
    (tmp_path / "theme" / "dark").mkdir(parents=True)
    (tmp_path / "theme" / "dark" / "x.scss").write_text(".x { y: z; }\n")
    assert "theme/dark/x.scss" in collect(tmp_path, exclude=[], cache=cache, **LIMITS).files
    time.sleep(TICK * 2)
    collect(tmp_path, exclude=[], cache=cache, **LIMITS)  # remembered again, settled
    (tmp_path / "theme" / "dark" / "x.scss").unlink()
    (tmp_path / "theme" / "dark").rmdir()
    (tmp_path / "theme" / "dark").write_text("not a folder")
    bundle = collect(tmp_path, exclude=[], cache=cache, **LIMITS)
    assert not [name for name in bundle.files if name.startswith("theme/")]


def test_writing_the_outputs_inside_the_tree_keeps_its_memo(local_dir: Path) -> None:
    """--out inside --src is left out of the bundle; rewriting a CSS file there changes
    no folder of the tree."""
    tmp_path = local_dir
    _tree(tmp_path)
    out = tmp_path / "dist"
    out.mkdir()
    (out / "main.css").write_text("a{}")
    cache = _settled_cache(tmp_path)
    first = collect(tmp_path, exclude=[out], cache=cache, **LIMITS)
    (out / "main.css").write_text("b{}")
    assert collect(tmp_path, exclude=[out], cache=cache, **LIMITS) is first
    assert "dist/main.css" not in first.files


def test_a_collect_overtaken_by_another_of_the_same_root_leaves_no_memo(
    local_dir: Path,
) -> None:
    """Two collects of one root at once (one cache used from two threads): the first to
    finish may hold older bytes than the files the second one saw, so it is not kept."""
    tmp_path = local_dir
    _tree(tmp_path)
    time.sleep(TICK * 2)
    cache = SourceCache(racy_ns=int(TICK * 1e9))
    res = resolve((str(tmp_path), (), 1 << 20, 100), True)
    first, second = cache.reader(res.root), cache.reader(res.root)
    trail = Trail(dirs=[(res.root, os.stat(res.root))])
    real = os.path.join(res.root, "main.scss")
    bundle = Bundle.from_sources({"main.scss": first(real, 1 << 20)})
    cache.remember_tree(res, bundle, trail, first, [real])
    assert cache.unchanged_tree(res) is None
    second(real, 1 << 20)
    cache.remember_tree(res, bundle, trail, second, [real])
    assert cache.unchanged_tree(res) is bundle


def _count_resolves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each path ``os.path.realpath`` resolves from now on."""
    resolved: list[str] = []
    realpath = os.path.realpath

    def counting(path: object, *args: object, **kwargs: object) -> str:
        resolved.append(str(path))
        return realpath(path, *args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(os.path, "realpath", counting)
    return resolved


def test_an_unchanged_tree_is_answered_without_resolving_its_paths(
    local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(local_dir / "src")
    out = local_dir / "dist"
    out.mkdir()
    cache = _settled_cache(local_dir / "src")
    first = collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS)
    resolved = _count_resolves(monkeypatch)
    assert collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS) is first
    assert resolved == [] and cache.tree_hits == 1
    out.rmdir()  # an excluded path naming nothing is resolved every time
    for _ in range(2):
        assert collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS) is first
    assert resolved == [str(local_dir / "src"), str(out)] * 2 and cache.tree_hits == 3


def test_a_src_link_pointed_at_another_tree_gives_that_tree(local_dir: Path) -> None:
    _tree(local_dir / "one")
    _tree(local_dir / "two")
    (local_dir / "two" / "lib" / "_colors.scss").write_text("$c: #0000aa;\n")
    src = local_dir / "src"
    src.symlink_to(local_dir / "one")
    cache = _settled_cache(local_dir / "one")
    for _ in range(2):
        assert collect(src, exclude=[], cache=cache, **LIMITS).files["lib/_colors.scss"] == (
            b"$c: #aa0000;\n"
        )
    assert cache.tree_hits == 2
    src.unlink()
    src.symlink_to(local_dir / "two")
    assert collect(src, exclude=[], cache=cache, **LIMITS).files["lib/_colors.scss"] == (
        b"$c: #0000aa;\n"
    )


@pytest.mark.parametrize("was", ["nothing", "a folder outside the tree"])
def test_an_excluded_link_pointed_into_the_tree_leaves_that_folder_out(
    local_dir: Path, was: str
) -> None:
    """``--out`` through a link that now leads into ``--src``: nothing in the tree
    changed, but one of its folders is the output folder now."""
    _tree(local_dir / "src")
    (local_dir / "elsewhere").mkdir()
    if was != "nothing":
        (local_dir / "elsewhere" / "lib").mkdir()
    link = local_dir / "link"
    link.symlink_to(local_dir / "elsewhere")
    out = link / "lib"
    cache = _settled_cache(local_dir / "src")
    for _ in range(2):
        bundle = collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS)
    assert "lib/_colors.scss" in bundle.files and cache.tree_hits == 1
    link.unlink()
    link.symlink_to(local_dir / "src")
    bundle = collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS)
    assert "lib/_colors.scss" not in bundle.files and "main.scss" in bundle.files


def _two_folders(local_dir: Path) -> tuple[Path, SourceCache, Path]:
    """A tree with folders a/ and b/, a settled cache of it, and a link to a/ outside it."""
    src = local_dir / "src"
    _tree(src)
    (src / "a").mkdir()
    (src / "b").mkdir()
    (local_dir / "link").symlink_to(src / "a")
    return src, _settled_cache(src), local_dir / "link"


def _names(src: Path, *exclude: Path) -> Names:
    return (str(src), tuple(map(str, exclude)), LIMITS["max_bytes"], LIMITS["max_files"])


def test_src_naming_another_folder_than_the_root_is_not_remembered(local_dir: Path) -> None:
    src, cache, _link = _two_folders(local_dir)
    other = _names(local_dir)
    res = replace(resolve(_names(src), True), names=other, before=identities(other))
    assert cache.unchanged_tree(res) is not None  # the tree's memo holds...
    assert cache.unchanged(other) is None  # ...but not for a --src naming another folder


def test_an_excluded_path_resolved_elsewhere_than_it_named_is_not_remembered(
    local_dir: Path,
) -> None:
    """The link moved between the identities and the resolving: excluded is b/, while
    the identity is a/'s; once it leads to a/ again, b/'s bundle must not answer."""
    src, cache, link = _two_folders(local_dir)
    names = _names(src, link)
    before = identities(names)
    link.unlink()
    link.symlink_to(src / "b")
    collect(src, exclude=[src / "b"], cache=cache, **LIMITS)  # the memo leaving b/ out
    res = Resolution(names, before, os.path.realpath(src), (os.path.realpath(link),))
    link.unlink()
    link.symlink_to(src / "a")
    assert cache.unchanged_tree(res) is not None
    assert cache.unchanged(names) is None


def test_a_path_that_moved_while_the_tree_was_read_is_not_remembered(local_dir: Path) -> None:
    src, cache, link = _two_folders(local_dir)
    names = _names(src, link)
    res = resolve(names, True)  # a/
    collect(src, exclude=[src / "a"], cache=cache, **LIMITS)  # the memo leaving a/ out
    link.unlink()
    link.symlink_to(src / "b")  # while the tree is read
    assert cache.unchanged_tree(res) is not None
    link.unlink()
    link.symlink_to(src / "a")
    assert cache.unchanged(names) is None


def test_a_memo_replaced_under_the_same_root_path_does_not_answer_an_old_alias(
    local_dir: Path,
) -> None:
    """``cur/src`` is remembered as ``v1/src``; v1 is renamed v0 (``cur`` follows it), a
    new v1/src is collected: the memo of the path v1/src is now another folder's."""
    for version in ("v1", "v2"):
        _tree(local_dir / version / "src")
    (local_dir / "v2" / "src" / "main.scss").write_text(".new { a: b; }\n")
    cur = local_dir / "cur"
    cur.symlink_to(local_dir / "v1")
    cache = _settled_cache(cur / "src")
    old = collect(cur / "src", exclude=[], cache=cache, **LIMITS)
    assert collect(cur / "src", exclude=[], cache=cache, **LIMITS) is old  # aliased
    (local_dir / "v1").rename(local_dir / "v0")
    cur.unlink()
    cur.symlink_to(local_dir / "v0")  # cur/src: the same folder as before
    (local_dir / "v2").rename(local_dir / "v1")
    time.sleep(TICK * 2)
    for _ in range(2):  # the memo of the path v1/src: the new folder's
        new = collect(local_dir / "v1" / "src", exclude=[], cache=cache, **LIMITS)
    assert new.files["main.scss"] == b".new { a: b; }\n"
    again = collect(cur / "src", exclude=[], cache=cache, **LIMITS)
    assert again.files == old.files


def test_an_excluded_file_is_resolved_every_time(local_dir: Path) -> None:
    """A file can have two names in the tree (hard links); only a folder has one."""
    src = local_dir / "src"
    _tree(src)
    (src / "d1").mkdir()
    (src / "d2").mkdir()
    (src / "d1" / "x.scss").write_text(".x { y: z; }\n")
    os.link(src / "d1" / "x.scss", src / "d2" / "x.scss")
    link = local_dir / "link"
    link.symlink_to(src / "d1")
    time.sleep(TICK * 2)
    cache = SourceCache(racy_ns=int(TICK * 1e9))
    for _ in range(3):
        assert (
            "d1/x.scss" not in collect(src, exclude=[link / "x.scss"], cache=cache, **LIMITS).files
        )
    link.unlink()
    link.symlink_to(src / "d2")
    bundle = collect(src, exclude=[link / "x.scss"], cache=cache, **LIMITS)
    assert "d1/x.scss" in bundle.files and "d2/x.scss" not in bundle.files


def test_the_aliases_of_a_dropped_root_are_forgotten(local_dir: Path) -> None:
    """An alias holds its tree's bundle: it must not outlive the memo it stands for."""
    for name in ("one", "two"):
        _tree(local_dir / name)
    time.sleep(TICK * 2)
    cache = SourceCache(max_roots=1, racy_ns=int(TICK * 1e9))
    collect(local_dir / "one", exclude=[], cache=cache, **LIMITS)
    assert [names[0] for names in cache._aliases] == [str(local_dir / "one")]
    collect(local_dir / "two", exclude=[], cache=cache, **LIMITS)  # "one" dropped
    assert [names[0] for names in cache._aliases] == [str(local_dir / "two")]
