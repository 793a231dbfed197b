"""Reading a bundle's source files, and a per-process memo of them for repeated submits.

A long-lived client (the in-process API in a build tool or a dev server) submits the
same directory again and again; reading and hashing every file each time is most of a
cache hit's cost. :class:`SourceCache` remembers each file's bytes, sha256 and import
stems under its stat signature, the way git's index does:

* the signature is (device, inode, size, mtime_ns, ctime_ns). Any write to a file, and
  any rename over it, changes its ctime, which no program can set back;
* a file whose mtime or ctime is within :data:`RACY_NS` of the moment it was read is
  *racy* (git's term): a write in the same timestamp tick could leave the signature
  unchanged, so it is read again next time instead of trusted.

So a memo is used only for files that have not been touched since well before they
were read, and a changed file is always read again: the digest, and so the CSS, is
never that of stale bytes. The signature is taken from the opened file (``fstat``), so
a network mount revalidates it as it does for any open. Assumed, as by git: the
filesystem's clock is within :data:`RACY_NS` of this machine's (NTP on both ends of a
network mount), and ctime is the change time (not on Windows before Python 3.12, where
no cache is made: see :func:`for_this_platform`). A one-shot process (``scssq
submit``) passes no cache; a :class:`cli.client.Client` whose ``sources`` is set to None
reads every file every time.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO

#: Nanoseconds a file must have been left alone before it was read for its memo to be
#: trusted: well above any filesystem's timestamp tick (ext4, xfs, tmpfs take the kernel's
#: coarse clock, a few ms; FAT has 2 s mtimes) and small clock adjustments.
RACY_NS = 3_000_000_000
#: Source roots a :class:`SourceCache` keeps memos for (least recently collected dropped).
MAX_ROOTS = 8

_IMPORT_RE = re.compile(r"@(?:import|use|forward)\s+([^;\n]+)")
_QUOTED_RE = re.compile(r"""["']([^"']+)["']""")


@dataclass(frozen=True)
class Source:
    """One file as bundled: its bytes, their sha256 (hex) and the stems it imports."""

    data: bytes
    sha256: str
    stems: frozenset[str]

    @classmethod
    def of(cls, data: bytes) -> Source:
        return cls(data, hashlib.sha256(data).hexdigest(), import_stems(data))


def import_stems(data: bytes) -> frozenset[str]:
    """Base names (no extension, no leading '_') of everything a stylesheet imports."""
    stems = set()
    for clause in _IMPORT_RE.findall(data.decode("utf-8", errors="replace")):
        for target in _QUOTED_RE.findall(clause):
            name = target.rsplit("/", 1)[-1]
            if name.endswith(".css"):
                name = name[:-4]
            stems.add(name.lstrip("_"))
    return frozenset(stems)


def read_source(real: str, limit: int) -> Source:
    """Read ``real``, at most ``limit + 1`` bytes (the caller checks its limit)."""
    with open(real, "rb") as fh:
        return Source.of(_read(fh, os.fstat(fh.fileno()).st_size, limit))


def _read(fh: BinaryIO, size: int, limit: int) -> bytes:
    # Sized to the file: read(limit) would allocate ``limit`` bytes for every file.
    data = fh.read(min(size, limit) + 1)
    if size < len(data) <= limit:  # longer than its st_size (growing, or procfs)
        data += fh.read(limit + 1 - len(data))
    return data


@dataclass(frozen=True)
class _Memo:
    signature: tuple[int, int, int, int, int]
    source: Source


def for_this_platform() -> SourceCache | None:
    """A cache where ctime means change time (POSIX; Windows from Python 3.12), else None."""
    if os.name == "nt" and sys.version_info < (3, 12):
        return None
    return SourceCache()


class SourceCache:
    """Memos of source files by stat signature, for one process's repeated collects."""

    def __init__(self, max_roots: int = MAX_ROOTS, racy_ns: int = RACY_NS) -> None:
        self.max_roots = max_roots
        self.racy_ns = racy_ns
        self._roots: OrderedDict[str, dict[str, _Memo]] = OrderedDict()
        #: Files read (not taken from a memo) since this cache was made.
        self.reads = 0

    def reader(self, root: str) -> CachedReader:
        """The reader for one collect under ``root``; it keeps only what that collect saw."""
        previous = self._roots.pop(root, {})
        seen: dict[str, _Memo] = {}
        self._roots[root] = seen
        while len(self._roots) > self.max_roots:
            self._roots.popitem(last=False)
        return CachedReader(self, previous, seen)


class CachedReader:
    """Reads one collect's files, from a memo when the file provably did not change."""

    def __init__(
        self, cache: SourceCache, previous: dict[str, _Memo], seen: dict[str, _Memo]
    ) -> None:
        self.cache = cache
        self.previous = previous
        self.seen = seen

    def __call__(self, real: str, limit: int) -> Source:
        # open() makes a network mount revalidate the file's attributes (close-to-open
        # consistency); a bare stat may answer from a cache for seconds.
        with open(real, "rb") as fh:
            st = os.fstat(fh.fileno())
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            memo = self.previous.get(real)
            if memo is not None and memo.signature == signature:
                self.seen[real] = memo
                return memo.source
            read_at = time.time_ns()
            source = Source.of(_read(fh, st.st_size, limit))
        self.cache.reads += 1
        # A write during the read changes the ctime: the memo then never matches again.
        settled = max(st.st_mtime_ns, st.st_ctime_ns) < read_at - self.cache.racy_ns
        if settled and len(source.data) == st.st_size:
            self.seen[real] = _Memo(signature, source)
        return source
