"""The source cache of a long-lived client: files that did not change are not read again,
and a file that changed, however it changed, always is."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from compiler_tasks.bundle import collect
from compiler_tasks.errors import BundleError
from compiler_tasks.sources import SourceCache

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
