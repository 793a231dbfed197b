"""The archive's fast reader: it reads what pack writes, and never judges differently.

:func:`archive.unpack` reads the layout :func:`archive.pack` writes without tarfile; any
other archive goes to tarfile. Whatever the bytes, the fast reader either steps aside
(None) or gives exactly what the tarfile reader gives: the same files, or the same
refusal.
"""

from __future__ import annotations

import struct
import sys
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler_tasks.bundle import archive
from compiler_tasks.errors import BundleError

LIMITS = {"max_bytes": 4096, "max_files": 6}
LIMIT = archive.archive_limit(**LIMITS)
FILES = {"main.scss": b'@import "lib/x";\n', "lib/_x.scss": b"$x: 1;\n" * 30}


def _tar(files: dict[str, bytes]) -> bytes:
    """The tar stream pack writes for ``files`` (its gzip member inflated)."""
    return zlib.decompress(archive.pack(files), zlib.MAX_WBITS | 16)


def _gzip(tar: bytes) -> bytes:
    """``tar`` framed as pack frames it: its gzip header, deflate, CRC and length."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(tar) + deflate.flush()
    return archive._GZIP_HEADER + body + struct.pack("<II", zlib.crc32(tar), len(tar))


def _outcome(read, *args):  # type: ignore[no-untyped-def]
    try:
        return read(*args)
    except BundleError as e:
        return f"BundleError: {e}"


def _fast(tar: bytes):  # type: ignore[no-untyped-def]
    return _outcome(archive._plain_members, tar, LIMITS["max_bytes"], LIMITS["max_files"])


def _tarfile(tar: bytes):  # type: ignore[no-untyped-def]
    data = _gzip(tar)
    return _outcome(archive._tarfile_members, data, LIMIT, *LIMITS.values())


def test_packed_archives_are_read_without_tarfile() -> None:
    files = {**FILES, "empty.css": b"", "x" * 95 + ".scss": b"a" * 512}
    tar = _tar(files)
    assert archive._inflate(archive.pack(files), LIMIT) == tar
    assert archive._plain_members(tar, 1 << 20, 10) == files
    assert archive.unpack(archive.pack(files), max_bytes=1 << 20, max_files=10) == files


@pytest.mark.parametrize(
    "frame",
    [
        lambda gz: gz + b"\0" * 8,  # more after the trailer (gzip reads it as padding)
        lambda gz: gz[:-8] + struct.pack("<II", 0, len(gz)),  # CRC wrong
        lambda gz: gz[:-1],  # trailer cut
        lambda gz: b"\x1f\x8b\x08\x08" + gz[4:],  # a flag pack never sets
    ],
    ids=["trailing", "crc", "cut", "flag"],
)
def test_any_other_gzip_framing_goes_to_tarfile(frame) -> None:  # type: ignore[no-untyped-def]
    assert archive._inflate(frame(archive.pack(FILES)), LIMIT) is None


def test_an_archive_inflating_past_the_limit_goes_to_tarfile() -> None:
    packed = archive.pack({"a.scss": b"\0" * (LIMIT + 1)})
    assert archive._inflate(packed, LIMIT) is None
    with pytest.raises(BundleError, match="expands beyond"):
        archive.unpack(packed, **LIMITS)


def test_a_tar_stream_over_the_fast_bound_streams_through_tarfile(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A hostile archive with pack's header inflates no further than FAST_MAX_TAR at once."""
    files = {"a.scss": b"a" * 3000, "b.scss": b"b" * 3000}
    monkeypatch.setattr(archive, "FAST_MAX_TAR", 4096)
    calls = []
    read = archive._tarfile_members
    monkeypatch.setattr(archive, "_tarfile_members", lambda *a: calls.append(1) or read(*a))
    assert archive.unpack(archive.pack(files), max_bytes=1 << 20, max_files=9) == files
    assert calls == [1]
    bomb = archive.pack({"big.scss": b"\0" * (1 << 20)})
    with pytest.raises(BundleError, match="expands beyond 4096 bytes"):
        archive.unpack(bomb, max_bytes=4096, max_files=9)


@pytest.mark.parametrize(
    "edit,why",
    [
        (lambda t: bytes(1024) + t, "an end block first: tarfile calls it empty"),
        (lambda t: t[: 512 + 100], "data cut short"),
        (lambda t: t[:512] + t[512:].replace(b"$x", b"$y", 1), "data edited: still plain"),
        (lambda t: t.replace(b"0000644", b"0000755", 1), "another mode"),
        (lambda t: t.replace(b"ustar\x0000", b"ustar  \x00", 1), "GNU magic"),
    ],
)
def test_edited_streams(edit, why) -> None:  # type: ignore[no-untyped-def]
    tar = edit(_tar(FILES))
    fast = _fast(tar)
    if why.endswith("still plain"):
        assert fast == _tarfile(tar) and isinstance(fast, dict)
    else:
        assert fast is None, why


def test_refusals_are_tarfiles_word_for_word() -> None:
    for files in (
        {"../x.scss": b""},
        {f"f{i}.scss": b"" for i in range(7)},
        {"big.scss": b"x" * 4097},
    ):
        tar = _tar(files)
        fast = _fast(tar)
        assert isinstance(fast, str) and fast == _tarfile(tar), fast


#: Where FILES' two headers are in their tar stream ("lib/_x.scss" first: 210 bytes).
HEADERS = (0, 1024)


def _seal(tar: bytearray, at: int) -> None:
    """Give the header at ``at`` the checksum of its current bytes."""
    head = tar[at : at + 512]
    checksum = sum(head[:148]) + 8 * 0x20 + sum(head[156:])
    tar[at + 148 : at + 156] = b"%06o\0 " % checksum


#: Header offsets of the fields a forger may change: the name's end, mode, uid, gid, size,
#: mtime, checksum, type flag, link name, magic, version, owner names, name prefix.
FIELDS = [0, 9, 99, 100, 107, 108, 124, 134, 135, 136, 148, 156, 157, 257, 262, 263, 265, 297]
FIELDS += [329, 345, 346]
VALUES = st.sampled_from(b"\0 0157x8/.g\xff")
EVERYWHERE = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))


def _agree(tar: bytes) -> None:
    fast = _fast(tar)
    if fast is not None:
        assert fast == _tarfile(tar)


@EVERYWHERE
@given(st.data())
def test_the_fast_reader_agrees_with_tarfile_on_forged_headers(data: st.DataObject) -> None:
    """Field edits with the checksum made right again, as a forger would write them."""
    tar = bytearray(_tar(FILES))
    assert _fast(bytes(tar[HEADERS[1] :])) == {"main.scss": FILES["main.scss"]}
    for _ in range(data.draw(st.integers(1, 2))):
        at = data.draw(st.sampled_from(HEADERS)) + data.draw(st.sampled_from(FIELDS))
        tar[at] = data.draw(VALUES)
    for at in HEADERS:
        _seal(tar, at)
    _agree(bytes(tar))


@EVERYWHERE
@given(st.data())
def test_the_fast_reader_agrees_with_tarfile_whatever_the_bytes(data: st.DataObject) -> None:
    tar = bytearray(_tar(FILES))
    span = 4 * 512 + 1024  # both headers, both members' data, the end blocks
    for _ in range(data.draw(st.integers(1, 3))):
        tar[data.draw(st.integers(0, span - 1))] = data.draw(VALUES | st.integers(0, 255))
    _agree(bytes(tar[: data.draw(st.integers(0, len(tar)))]))


def test_no_tarfile_import_for_a_packed_archive() -> None:
    """Not a speed claim: the fast path is taken (tarfile is not even imported)."""
    import subprocess

    code = (
        "import sys; from compiler_tasks.bundle import archive; "
        f"files = {FILES!r}; "
        "assert archive.unpack(archive.pack(files), max_bytes=1 << 20, max_files=9) == files; "
        "print('tarfile' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
