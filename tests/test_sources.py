"""Collecting a tree again: every collect bundles what the files and folders hold now,
however they changed since the last one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compiler_tasks.bundle.collect import collect
from compiler_tasks.bundle.rule import Names
from compiler_tasks.errors import BundleError

LIMITS = {"max_bytes": 1 << 20, "max_files": 100}


def _tree(root: Path) -> None:
    (root / "lib").mkdir(parents=True, exist_ok=True)
    (root / "main.scss").write_text('@import "lib/colors";\n@import "reset";\n.a { color: $c; }\n')
    (root / "lib" / "_colors.scss").write_text("$c: #aa0000;\n")
    (root / "reset.css").write_text("html { margin: 0 }\n")


def test_names_are_every_word_a_stylesheet_could_name_a_file_with() -> None:
    names = Names()
    names.add(b'@use "sass:meta";\n@import "lib/colors", \'reset.css\';\n$f: "_x";\n')
    assert all(names.css(f"{n}.css") for n in ("colors", "_reset", "x", "lib"))
    assert not names.css("other.css") and not names.folder("node_modules")
    names.add(b'@include meta.load-css("themes/#{$t}");\n')
    assert names.css("other.css")  # a computed URL may name any .css file


def test_a_same_size_rewrite_with_its_mtime_put_back_is_bundled(tmp_path: Path) -> None:
    _tree(tmp_path)
    colors = tmp_path / "lib" / "_colors.scss"
    before = os.stat(colors)
    first = collect(tmp_path, exclude=[], **LIMITS).digest
    colors.write_text("$c: #00aa00;\n")  # same size; then the old mtime is restored
    os.utime(colors, ns=(before.st_atime_ns, before.st_mtime_ns))
    bundle = collect(tmp_path, exclude=[], **LIMITS)
    assert bundle.files["lib/_colors.scss"] == b"$c: #00aa00;\n"
    assert bundle.digest != first


def test_new_removed_and_replaced_files_and_folders_are_seen(tmp_path: Path) -> None:
    _tree(tmp_path)
    collect(tmp_path, exclude=[], **LIMITS)
    (tmp_path / "theme" / "dark").mkdir(parents=True)
    (tmp_path / "theme" / "dark" / "x.scss").write_text(".x { y: z; }\n")
    (tmp_path / "reset.css").unlink()
    new = tmp_path / "new.tmp"
    new.write_text("$c: #0000aa;\n")
    os.replace(new, tmp_path / "lib" / "_colors.scss")
    bundle = collect(tmp_path, exclude=[], **LIMITS)
    assert sorted(bundle.files) == ["lib/_colors.scss", "main.scss", "theme/dark/x.scss"]
    assert bundle.files["lib/_colors.scss"] == b"$c: #0000aa;\n"
    (tmp_path / "theme" / "dark" / "x.scss").unlink()
    (tmp_path / "theme" / "dark").rmdir()
    (tmp_path / "theme" / "dark").write_text("not a folder")
    bundle = collect(tmp_path, exclude=[], **LIMITS)
    assert not [name for name in bundle.files if name.startswith("theme/")]


def test_limits_apply_to_every_collect(tmp_path: Path) -> None:
    _tree(tmp_path)
    collect(tmp_path, exclude=[], **LIMITS)
    with pytest.raises(BundleError, match="exceeds 20 bytes"):
        collect(tmp_path, exclude=[], max_bytes=20, max_files=100)
    with pytest.raises(BundleError, match="more than 2 files"):
        collect(tmp_path, exclude=[], max_bytes=1 << 20, max_files=2)


def test_outputs_written_inside_the_tree_are_left_out(tmp_path: Path) -> None:
    _tree(tmp_path)
    out = tmp_path / "dist"
    out.mkdir()
    (out / "main.css").write_text("a{}")
    first = collect(tmp_path, exclude=[out], **LIMITS)
    (out / "main.css").write_text("b{}")
    again = collect(tmp_path, exclude=[out], **LIMITS)
    assert again.digest == first.digest and "dist/main.css" not in again.files


def test_a_src_link_pointed_at_another_tree_gives_that_tree(tmp_path: Path) -> None:
    _tree(tmp_path / "one")
    _tree(tmp_path / "two")
    (tmp_path / "two" / "lib" / "_colors.scss").write_text("$c: #0000aa;\n")
    src = tmp_path / "src"
    src.symlink_to(tmp_path / "one")
    assert collect(src, exclude=[], **LIMITS).files["lib/_colors.scss"] == b"$c: #aa0000;\n"
    src.unlink()
    src.symlink_to(tmp_path / "two")
    assert collect(src, exclude=[], **LIMITS).files["lib/_colors.scss"] == b"$c: #0000aa;\n"


@pytest.mark.parametrize("was", ["nothing", "a folder outside the tree"])
def test_an_excluded_link_pointed_into_the_tree_leaves_that_folder_out(
    tmp_path: Path, was: str
) -> None:
    """``--out`` through a link that now leads into ``--src``: nothing in the tree
    changed, but one of its folders is the output folder now."""
    _tree(tmp_path / "src")
    (tmp_path / "elsewhere").mkdir()
    if was != "nothing":
        (tmp_path / "elsewhere" / "lib").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    out = link / "lib"
    assert "lib/_colors.scss" in collect(tmp_path / "src", exclude=[out], **LIMITS).files
    link.unlink()
    link.symlink_to(tmp_path / "src")
    bundle = collect(tmp_path / "src", exclude=[out], **LIMITS)
    assert "lib/_colors.scss" not in bundle.files and "main.scss" in bundle.files
