"""The archive format: what pack writes, unpack reads back, and what unpack refuses.

The refusals of hostile archives written by other tools are in tests/test_bundle.py,
tests/test_properties.py and tests/hostile/test_archives.py.
"""

from __future__ import annotations

import gzip
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler_tasks.bundle import archive
from compiler_tasks.errors import BundleError

LIMITS = {"max_bytes": 4096, "max_files": 6}
LIMIT = archive.archive_limit(**LIMITS)
FILES = {"main.scss": b'@import "lib/x";\n', "lib/_x.scss": b"$x: 1;\n" * 30}
EVERYWHERE = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))


def test_packed_archives_are_read_back() -> None:
    files = {
        **FILES,
        "empty.css": b"",
        "x" * 95 + ".scss": b"a" * 512,
        "d/" + "n" * 120 + ".scss": b"pax",
    }
    packed = archive.pack(files)
    assert packed == archive.pack(dict(reversed(files.items())))  # same files, same bytes
    assert archive.unpack(packed, max_bytes=1 << 20, max_files=10) == files


def test_an_archive_inflating_past_the_limit_is_refused() -> None:
    packed = archive.pack({"a.scss": b"\0" * (LIMIT + 1)})
    with pytest.raises(BundleError, match="expands beyond"):
        archive.unpack(packed, **LIMITS)
    bomb = archive.pack({"big.scss": b"\0" * (1 << 20)})
    with pytest.raises(BundleError, match="expands beyond 4096 bytes"):
        archive.unpack(bomb, max_bytes=4096, max_files=9)


def test_a_stream_cut_inside_a_member_is_refused() -> None:
    tar = gzip.decompress(archive.pack(FILES))
    with pytest.raises(BundleError, match=r"unreadable|truncated"):
        archive.unpack(gzip.compress(tar[: 512 + 100]), **LIMITS)


@pytest.mark.parametrize(
    "files,reason",
    [
        ({"../x.scss": b""}, "archive entry '../x.scss' must be a plain relative path"),
        ({f"f{i}.scss": b"" for i in range(7)}, "archive holds more than 6 files"),
        ({"big.scss": b"x" * 4097}, "archive expands beyond 4096 bytes"),
    ],
)
def test_refusals_name_the_entry_or_the_limit(files: dict[str, bytes], reason: str) -> None:
    with pytest.raises(BundleError, match=re.escape(reason)):
        archive.unpack(archive.pack(files), **LIMITS)


def _layout_by_sets(names: list[str], max_files: int) -> str | None:
    """check_layout's rules, spelled out with a set of every folder of every name."""
    folders = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    clash = folders.intersection(names)
    if clash:
        return f"archive entry {min(clash)!r} is both a file and a folder"
    if len(folders) > archive.FOLDERS_PER_FILE * max_files:
        return f"archive holds {len(folders)} folders"
    return None


@EVERYWHERE
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "a-b", "a.b", "a b", "c"]), min_size=1, max_size=4),
        min_size=1,
        max_size=12,
    ).map(lambda paths: sorted({"/".join(p) for p in paths})),
    st.integers(1, 4),
)
def test_layout_check_agrees_with_the_set_of_all_folders(names: list[str], max_files: int) -> None:
    try:
        archive.check_layout(names, max_files)
        outcome = None
    except BundleError as e:
        outcome = str(e)
    expected = _layout_by_sets(names, max_files)
    assert (outcome is None) == (expected is None), (outcome, expected)
    if expected is not None:
        assert outcome is not None and outcome.startswith(expected)


def test_deep_names_are_refused_without_building_every_folder() -> None:
    """20,000 names 251 folders deep: 5 million folders to write. Refused by count,
    and the check never holds more than the names themselves (it held 1.7 GB)."""
    import tracemalloc

    names = [f"{i:05d}/" + "a/" * 250 + "x.scss" for i in range(20_000)]
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match="holds 5020000 folders, more than 80000"):
            archive.check_layout(names, 20_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
