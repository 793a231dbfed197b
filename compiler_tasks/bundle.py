"""Bundles: the set of source files one submit sends to the fleet.

The client collects a bundle from a directory (what goes in, what stays out),
packs it as a deterministic tar.gz for transport, and computes the content
digest. The worker reads an archive back, validating every entry while it
streams (regular files with plain relative names only, bounded count and
size, no duplicates), checks the digest, and writes the files into a fresh
per-task directory. The tar archive is only transport: the digest is over
(path, sha256) pairs, see :func:`keys.content_digest`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: a cache hit never builds or reads an archive
    import gzip

from .errors import BundleError, InvalidInput
from .keys import content_digest, validate_relpath
from .sources import Source, SourceCache, Trail, read_source, resolve

SOURCE_SUFFIXES = (".scss", ".sass")
#: Directories never bundled: version control metadata.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
#: gzip level of the bundle archive: level 1 compresses Bootstrap's 330 KB of Sass to
#: 82 KB in 2 ms, level 6 to 65 KB in 7.5 ms; on a miss the client's CPU time counts and
#: the archive is only transport (the digest is over the files).
GZIP_LEVEL = 1
#: Tar bytes a bundle may carry per file beyond the file's content: a header block, a pax
#: header for a long name, padding. tarfile reads pax and GNU long-name headers whole,
#: before the member is seen, so the decompressed stream itself is bounded with this.
TAR_OVERHEAD_PER_FILE = 3072
#: Tar bytes beyond all files: end-of-archive blocks and record padding.
TAR_OVERHEAD = 20480
#: Longest name of one file or folder most filesystems take (Linux NAME_MAX), in bytes.
NAME_MAX = 255


@dataclass(frozen=True)
class Bundle:
    """Source files by relative POSIX path, and their content digest."""

    #: Read-only: a warm client hands the same bundle to every submit of an unchanged tree.
    files: Mapping[str, bytes]
    digest: str

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> Bundle:
        pairs = ((path, hashlib.sha256(data).hexdigest()) for path, data in files.items())
        return cls(files=MappingProxyType(files), digest=content_digest(pairs))

    @classmethod
    def from_sources(cls, sources: dict[str, Source]) -> Bundle:
        files = {path: source.data for path, source in sources.items()}
        digest = content_digest((path, source.sha256) for path, source in sources.items())
        return cls(files=MappingProxyType(files), digest=digest)

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())

    def archive(self) -> bytes:
        """A deterministic tar.gz of the files (same files, same bytes).

        Names of at most 100 ASCII bytes (nearly every stylesheet) get plain ustar
        headers written here, as tarfile (3.11) writes them, at a fraction of its
        cost; any other name makes tarfile write the whole archive (pax headers).
        """
        import zlib

        paths = sorted(self.files)
        if not all(_plain_name(path, len(self.files[path])) for path in paths):
            return self._tarfile_archive()
        parts = []
        for path in paths:
            data = self.files[path]
            parts += [_ustar_header(path.encode("ascii"), len(data)), data]
            parts.append(b"\0" * (-len(data) % _BLOCK))
        parts.append(b"\0" * (2 * _BLOCK))
        tar = b"".join(parts)
        tar += b"\0" * (-len(tar) % _RECORD)
        deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = deflate.compress(tar) + deflate.flush()
        trailer = struct.pack("<II", zlib.crc32(tar), len(tar) & 0xFFFFFFFF)
        return _GZIP_HEADER + body + trailer

    def _tarfile_archive(self) -> bytes:
        import gzip
        import tarfile

        buf = io.BytesIO()
        with (
            gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=GZIP_LEVEL) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(self.files):
                data = self.files[path]
                info = tarfile.TarInfo(path)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


_BLOCK = 512
#: tarfile pads an archive to whole records of 20 blocks.
_RECORD = 20 * _BLOCK
#: What ``gzip.GzipFile(mtime=0, compresslevel=1)`` writes first: magic, deflate, no
#: flags, mtime 0, "fastest" (xfl 4), unknown OS (255).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"


def _plain_name(path: str, size: int) -> bool:
    """Whether a plain ustar header holds this member (else tarfile writes pax headers)."""
    return path.isascii() and len(path) <= 100 and size < 8**11


def _ustar_header(name: bytes, size: int) -> bytes:
    """tarfile's ustar header of a regular file: mode 0644, uid/gid 0, mtime 0, no owner."""
    head = b"".join(
        [
            name.ljust(100, b"\0"),
            b"0000644\0",  # mode
            b"0000000\0" * 2,  # uid, gid
            b"%011o\0" % size,
            b"00000000000\0",  # mtime
            b" " * 8,  # checksum, counted as spaces
            b"0",  # regular file
            b"\0" * 100,  # link name
            b"ustar\x0000",
            b"\0" * 64,  # owner and group names
            b"\0" * 16,  # device numbers: none for a regular file
            b"\0" * 167,  # name prefix, padding
        ]
    )
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _walk(root: str, excluded: list[str], trail: Trail | None = None) -> dict[str, str]:
    """Relative path -> real path of candidate files; links followed while inside ``root``
    (a real path). ``trail`` gets each folder's stat, taken before listing it."""
    found: dict[str, str] = {}
    # Each directory carries the real paths of its ancestors: a link back up is a cycle.
    stack: list[tuple[str, str, frozenset[str]]] = [(root, "", frozenset())]
    while stack:
        real_dir, rel_dir, ancestors = stack.pop()
        if real_dir in ancestors:
            continue
        ancestors = ancestors | {real_dir}
        try:
            if trail is not None:
                trail.dirs.append((real_dir, os.stat(real_dir)))
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as e:
            raise BundleError(f"cannot read directory {rel_dir or '.'!r} under --src: {e}") from e
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_symlink():  # resolved, then held to the root like any path
                if trail is not None:
                    trail.linked = True
                real = os.path.realpath(entry.path)
                is_dir, is_file = os.path.isdir(real), os.path.isfile(real)
            else:  # inside a real directory: already real (no lstat per path component)
                real = os.path.join(real_dir, entry.name)
                is_dir = entry.is_dir(follow_symlinks=False)
                is_file = entry.is_file(follow_symlinks=False)
            if not _inside(real, root) or any(_inside(real, ex) for ex in excluded):
                continue
            if is_dir:
                if entry.name not in SKIPPED_DIRS:
                    stack.append((real, rel, ancestors))
            elif is_file and entry.name.endswith((*SOURCE_SUFFIXES, ".css")):
                found[rel] = real
    return found


def collect(
    src: Path,
    *,
    exclude: list[Path],
    max_bytes: int,
    max_files: int,
    cache: SourceCache | None = None,
) -> Bundle:
    """Bundle the stylesheets under ``src`` and the .css files they import.

    ``exclude`` holds directories to leave out (the output folder). Files are
    read once; limits are checked as they are read. ``cache`` (a long-lived
    client's) skips reading files that provably did not change since its last
    collect of ``src``, and returns its previous bundle when nothing under a local
    ``src`` changed (:meth:`SourceCache.unchanged_tree`), without resolving ``src`` and
    ``exclude`` again when they still name what they named (:meth:`SourceCache.unchanged`).
    """
    names = (str(src), tuple(map(str, exclude)), max_bytes, max_files)
    if cache is not None and (known := cache.unchanged(names)) is not None:
        return known
    if not src.is_dir():
        raise BundleError(f"--src {str(src)!r} is not a directory; pass the bundle root")
    res = resolve(names, cache is not None)
    if cache is not None and (known := cache.unchanged_tree(res)) is not None:
        return known
    trail = Trail() if cache is not None else None
    candidates = _walk(res.root, list(res.excluded), trail)
    reader = cache.reader(res.root) if cache is not None else None
    read = read_source if reader is None else reader
    sources: dict[str, Source] = {}
    reals: list[str] = []
    css: dict[str, str] = {}
    total = 0
    for rel, real in candidates.items():
        if rel.endswith(".css"):
            css[rel] = real
            continue
        total += _add(sources, rel, read, real, total, max_bytes, max_files)
        reals.append(real)
    stems: set[str] = set()
    for source in sources.values():
        stems |= source.stems
    for rel, real in css.items():
        if rel.rsplit("/", 1)[-1][:-4].lstrip("_") in stems:
            total += _add(sources, rel, read, real, total, max_bytes, max_files)
            reals.append(real)
    if not sources:
        raise BundleError(f"--src {str(src)!r} holds no .scss or .sass file")
    bundle = Bundle.from_sources(sources)
    if reader is not None and trail is not None:
        reader.cache.remember_tree(res, bundle, trail, reader, reals)
    return bundle


def _add(
    sources: dict[str, Source],
    rel: str,
    read: Callable[[str, int], Source],
    real: str,
    total: int,
    max_bytes: int,
    max_files: int,
) -> int:
    try:
        validate_relpath(rel, "bundled file")
    except InvalidInput as e:
        raise BundleError(f"{e}; rename it or move it out of --src") from None
    if len(sources) >= max_files:
        raise BundleError(
            f"the bundle has more than {max_files} files; narrow --src (SCSSQ_MAX_BUNDLE_FILES)"
        )
    source = read(real, max_bytes - total)
    if total + len(source.data) > max_bytes:
        raise BundleError(
            f"the bundle exceeds {max_bytes} bytes at {rel!r}; narrow --src "
            "(SCSSQ_MAX_BUNDLE_BYTES)"
        )
    sources[rel] = source
    return len(source.data)


def archive_limit(max_bytes: int, max_files: int) -> int:
    """The most bytes the tar stream of a bundle within the limits can hold."""
    return max_bytes + TAR_OVERHEAD_PER_FILE * max_files + TAR_OVERHEAD


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


def read_archive(data: bytes, *, max_bytes: int, max_files: int) -> Bundle:
    """Read a tar.gz bundle, refusing anything but plain relative regular files.

    Checks happen while streaming: a header is judged before its data is read,
    the running total of file sizes is bounded, and so is the decompressed
    stream itself (tar metadata included), so a decompression bomb or a
    file-count bomb stops early.
    """
    import gzip
    import tarfile
    import zlib

    files: dict[str, bytes] = {}
    total = 0
    try:
        gz = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        stream = _BoundedStream(gz, archive_limit(max_bytes, max_files))
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = member.name
                if not member.isreg():
                    raise BundleError(f"archive entry {name!r} is not a regular file")
                try:
                    validate_relpath(name, "archive entry")
                except InvalidInput as e:
                    raise BundleError(str(e)) from None
                if name in files:
                    raise BundleError(f"archive entry {name!r} appears twice")
                if len(files) >= max_files:
                    raise BundleError(f"archive holds more than {max_files} files")
                total += member.size
                if total > max_bytes:
                    raise BundleError(f"archive expands beyond {max_bytes} bytes")
                fh = tar.extractfile(member)
                content = fh.read(member.size + 1) if fh else b""
                if len(content) != member.size:
                    raise BundleError(f"archive entry {name!r} is truncated or oversized")
                files[name] = content
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise BundleError(f"bundle archive is unreadable: {e}") from e
    _check_layout(files)
    return Bundle.from_files(files)


def _check_layout(names: Collection[str]) -> None:
    """Refuse names no folder can hold, so that writing the tree fails only for the
    worker's own reasons: a name part over NAME_MAX bytes, or a name that is a file and
    also a folder of another entry (``a`` and ``a/b.scss``)."""
    folders: set[str] = set()
    for name in names:
        parts = name.split("/")
        if any(len(part.encode()) > NAME_MAX for part in parts):
            raise BundleError(f"archive entry {name!r} has a name part over {NAME_MAX} bytes")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    clash = folders.intersection(names)
    if clash:
        raise BundleError(f"archive entry {min(clash)!r} is both a file and a folder")


def write_tree(bundle: Bundle, root: Path) -> None:
    """Write the bundle's files under the empty directory ``root`` (never outside it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    made = {""}  # directories created so far, relative to root
    base = str(root)
    for rel in sorted(bundle.files):
        validate_relpath(rel, "bundled file")
        parent = rel.rpartition("/")[0]
        if parent not in made:
            os.makedirs(os.path.join(base, parent), exist_ok=True)
            made.add(parent)
        fd = os.open(os.path.join(base, rel), flags, 0o644)
        try:
            view = memoryview(bundle.files[rel])
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
