"""The bundle's transport format: a deterministic tar.gz, packed by clients, read by workers.

:func:`pack` has tarfile write the files sorted by name (mode 0644, uid and gid 0, mtime
0, no owner; pax headers only for names a plain ustar header cannot hold) and gzips the
stream with mtime 0, so the same files give the same bytes.

:func:`unpack` refuses anything but plain relative regular files, with bounded count and
size, no duplicates, and names a folder can hold. tarfile reads the stream member by
member as it is inflated, each header judged before its data is read, and the inflated
stream itself is bounded: a decompression or file-count bomb stops early.

The archive is only transport: the bundle's digest is over its files
(:func:`keys.content_digest`).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Collection, Mapping
from itertools import pairwise

from ..errors import BundleError, InvalidInput
from ..keys import validate_relpath

#: gzip level of the bundle archive: on a miss the client's CPU time counts and the
#: archive is only transport (the digest is over the files), so the fastest level.
GZIP_LEVEL = 1
#: Tar bytes a bundle may carry per file beyond the file's content: a header block, a pax
#: header for a long name, padding. tarfile reads pax and GNU long-name headers whole,
#: before the member is seen, so the decompressed stream itself is bounded with this.
TAR_OVERHEAD_PER_FILE = 3072
#: Tar bytes beyond all files: end-of-archive blocks and record padding.
TAR_OVERHEAD = 20480
#: Longest name of one file or folder most filesystems take (Linux NAME_MAX), in bytes.
NAME_MAX = 255
#: Folders a bundle may make a worker create, per file SCSSQ_MAX_BUNDLE_FILES allows.
FOLDERS_PER_FILE = 4


def archive_limit(max_bytes: int, max_files: int) -> int:
    """The most bytes the tar stream of a bundle within the limits can hold."""
    return max_bytes + TAR_OVERHEAD_PER_FILE * max_files + TAR_OVERHEAD


def pack(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar.gz of ``files`` (same files, same bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), GZIP_LEVEL, mtime=0)


def unpack(data: bytes, *, max_bytes: int, max_files: int) -> dict[str, bytes]:
    """The files of a tar.gz bundle: plain relative regular files within the limits.

    Raises BundleError naming the offending entry (or the stream) otherwise.
    """
    files = _members(data, archive_limit(max_bytes, max_files), max_bytes, max_files)
    check_layout(files, max_files)
    return files


def admit(
    files: Mapping[str, bytes], name: str, size: int, total: int, max_bytes: int, max_files: int
) -> int:
    """Check one regular member against the ones before it; returns the new total size."""
    try:
        validate_relpath(name, "archive entry")
    except InvalidInput as e:
        raise BundleError(str(e)) from None
    if name in files:
        raise BundleError(f"archive entry {name!r} appears twice")
    if len(files) >= max_files:
        raise BundleError(f"archive holds more than {max_files} files")
    total += size
    if total > max_bytes:
        raise BundleError(f"archive expands beyond {max_bytes} bytes")
    return total


class _BoundedStream:
    """The decompressed tar stream, cut off once it is longer than any bundle within limits.

    Member sizes are checked from their headers, but tarfile reads pax and GNU
    long-name headers whole into memory: without this bound, a 200 KB archive
    holding one 200 MB pax header would make the worker allocate it.
    """

    def __init__(self, stream: gzip.GzipFile, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        want = self.limit - self.total + 1
        data = self.stream.read(want if size < 0 else min(size, want))
        self.total += len(data)
        if self.total > self.limit:
            raise BundleError(
                f"archive expands beyond {self.limit} bytes of tar data "
                "(SCSSQ_MAX_BUNDLE_BYTES plus headers)"
            )
        return data


def _members(data: bytes, limit: int, max_bytes: int, max_files: int) -> dict[str, bytes]:
    """Read any tar.gz with tarfile, judging each header before its data is read.

    The running total of file sizes is bounded, and so is the decompressed stream itself
    (tar metadata included), so a decompression bomb or a file-count bomb stops early.
    """
    files: dict[str, bytes] = {}
    total = 0
    try:
        gz = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        stream = _BoundedStream(gz, limit)
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = member.name
                if not member.isreg():
                    raise BundleError(f"archive entry {name!r} is not a regular file")
                total = admit(files, name, member.size, total, max_bytes, max_files)
                fh = tar.extractfile(member)
                content = fh.read(member.size + 1) if fh else b""
                if len(content) != member.size:
                    raise BundleError(f"archive entry {name!r} is truncated or oversized")
                files[name] = content
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise BundleError(f"bundle archive is unreadable: {e}") from e
    return files


def check_layout(names: Collection[str], max_files: int) -> None:
    """Refuse names no folder can hold, so that writing the tree fails only for the
    worker's own reasons: a name part over NAME_MAX bytes, a name that is a file and
    also a folder of another entry (``a`` and ``a/b.scss``), or more than
    ``FOLDERS_PER_FILE * max_files`` folders to create.

    Linear in the names' total length plus a sort, whatever their depth: with ``/`` as
    the lowest character (names never hold a NUL), every name below a folder ``N``
    sorts right after ``N``, so neighbours show every such ``N`` and every folder a
    name shares with the one before it. (Collecting every folder of every name instead
    is quadratic in the depth: 20,000 names 250 folders deep make 5 million folders.)
    """
    for name in names:
        if any(len(part.encode()) > NAME_MAX for part in name.split("/")):
            raise BundleError(f"archive entry {name!r} has a name part over {NAME_MAX} bytes")
    keys = sorted(name.replace("/", "\0") for name in names)
    clash = [key for key, after in pairwise(keys) if after.startswith(key + "\0")]
    if clash:
        first = min(key.replace("\0", "/") for key in clash)
        raise BundleError(f"archive entry {first!r} is both a file and a folder")
    limit = FOLDERS_PER_FILE * max_files
    folders = sum(_new_folders(key, before) for before, key in pairwise(["", *keys]))
    if folders > limit:
        raise BundleError(
            f"archive holds {folders} folders, more than {limit} "
            f"({FOLDERS_PER_FILE} per file of SCSSQ_MAX_BUNDLE_FILES)"
        )


def _new_folders(key: str, before: str) -> int:
    """How many folders of ``key`` are not folders of ``before`` (its sorted neighbour)."""
    low, high = 0, min(len(key), len(before))
    while low < high:  # the longest common prefix, compared at C speed
        middle = (low + high + 1) // 2
        if key.startswith(before[:middle]):
            low = middle
        else:
            high = middle - 1
    return key.count("\0") - key.count("\0", 0, low)
