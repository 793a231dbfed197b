"""The source cache of a long-lived client: files that did not change are not read again,
and a file that changed, however it changed, always is."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compiler_tasks import signatures
from compiler_tasks.bundle import Bundle, collect
from compiler_tasks.errors import BundleError
from compiler_tasks.signatures import local_devices
from compiler_tasks.sources import SourceCache, Trail, identities

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
    root = os.path.realpath(tmp_path)
    first, second = cache.reader(root), cache.reader(root)
    trail = Trail(dirs=[(root, os.stat(root))])
    real = os.path.join(root, "main.scss")
    bundle = Bundle.from_sources({"main.scss": first(real, 1 << 20)})
    cache.remember_tree(root, ("k",), bundle, trail, first, [real])
    assert cache.unchanged_tree(root, ("k",)) is None
    second(real, 1 << 20)
    cache.remember_tree(root, ("k",), bundle, trail, second, [real])
    assert cache.unchanged_tree(root, ("k",)) is bundle


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
    cache = _settled_cache(local_dir / "src")
    first = collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS)
    resolved = _count_resolves(monkeypatch)
    assert collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS) is first
    assert resolved == [] and cache.tree_hits == 1
    out.mkdir()  # the excluded path names a folder now: resolved again
    assert collect(local_dir / "src", exclude=[out], cache=cache, **LIMITS) is first
    assert resolved == [str(local_dir / "src"), str(out)]


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


def test_paths_are_remembered_as_resolved_only_if_they_held_still(local_dir: Path) -> None:
    """An alias is kept only when ``--src`` names the memo's root and no path named
    something else by the end of the collect than at its start."""
    src, out = local_dir / "src", local_dir / "dist"
    _tree(src)
    cache = _settled_cache(src)  # leaves the memo of the tree with nothing excluded
    root = os.path.realpath(src)
    key = ((), LIMITS["max_bytes"], LIMITS["max_files"])
    other = (str(local_dir), (), LIMITS["max_bytes"], LIMITS["max_files"])
    cache.alias(other, root, key, identities(other))  # names a folder that is not the root
    assert cache.unchanged(other) is None
    names = (f"{src}/.", (str(out),), LIMITS["max_bytes"], LIMITS["max_files"])
    held = identities(names)
    out.mkdir()  # --out named nothing when resolved, a folder by the end...
    cache.alias(names, root, key, held)
    out.rmdir()  # ...and nothing again
    assert cache.unchanged(names) is None
    cache.alias(names, root, key, identities(names))
    assert cache.unchanged(names) is not None
