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

On a local filesystem the cache also remembers the whole bundle of a tree
(:meth:`SourceCache.unchanged_tree`): when every folder walked and every file bundled
has the signature it had, settled, the previous bundle is the answer, checked with one
``stat`` per folder and file instead of a listing and an ``open`` per file. A folder's
mtime and ctime change whenever an entry is added, removed or renamed in it (POSIX),
so its signature stands for its listing, as in git's untracked cache. Only trees on a
filesystem known to be local (:data:`LOCAL_FILESYSTEMS`, from ``/proc/self/mountinfo``)
and with no links get this memo: a network mount may answer ``stat`` from a cache, and
a link's target can change with nothing in the tree changing.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from .bundle import Bundle

#: Nanoseconds a file must have been left alone before it was read for its memo to be
#: trusted: well above any filesystem's timestamp tick (ext4, xfs, tmpfs take the kernel's
#: coarse clock, a few ms; FAT has 2 s mtimes) and small clock adjustments.
RACY_NS = 3_000_000_000
#: Source roots a :class:`SourceCache` keeps memos for (least recently collected dropped).
MAX_ROOTS = 8
#: Filesystem types (``/proc/self/mountinfo``) whose ``stat`` is authoritative and whose
#: folders' mtimes follow their entries: kernel-local filesystems, never network or FUSE.
LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs"}
)
MOUNTINFO = "/proc/self/mountinfo"

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


#: A file's signature: device, inode, size, mtime_ns, ctime_ns.
FileSignature = tuple[int, int, int, int, int]


def file_signature(st: os.stat_result) -> FileSignature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(st: os.stat_result, at: int, racy_ns: int = RACY_NS) -> bool:
    """Whether a file stat'ed at ``at`` (time.time_ns) was last changed well before then."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < at - racy_ns


@dataclass(frozen=True)
class _Memo:
    signature: FileSignature
    source: Source


@dataclass
class Trail:
    """What one walk of a tree saw: each folder's stat, taken before it was listed (so an
    entry added after the listing changes the folder's signature), and whether an entry
    was a link."""

    at: int = field(default_factory=time.time_ns)
    dirs: list[tuple[str, os.stat_result]] = field(default_factory=list)
    linked: bool = False


@dataclass(frozen=True)
class _Tree:
    """The bundle of one tree, and the signature of each folder walked and file bundled."""

    key: tuple[object, ...]
    bundle: Bundle
    paths: tuple[str, ...]
    signatures: list[FileSignature]


@dataclass
class _Root:
    files: dict[str, _Memo]
    tree: _Tree | None = None


def for_this_platform() -> SourceCache | None:
    """A cache where ctime means change time (POSIX; Windows from Python 3.12), else None."""
    if os.name == "nt" and sys.version_info < (3, 12):
        return None
    return SourceCache()


def local_devices(devices: Iterable[int], mountinfo: str = MOUNTINFO) -> bool:
    """Whether every device is a mount of a :data:`LOCAL_FILESYSTEMS` type.

    False where ``mountinfo`` cannot be read (not Linux) or a device is not listed in it.
    """
    wanted = {f"{os.major(dev)}:{os.minor(dev)}" for dev in devices}
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return False
    for line in lines:
        # id parent major:minor root mount-point options [optional...] - type source ...
        fields, _sep, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) >= 3 and parts[2] in wanted and rest.split()[:1]:
            if rest.split()[0] not in LOCAL_FILESYSTEMS:
                return False
            wanted.discard(parts[2])
    return not wanted


class SourceCache:
    """Memos of source files by stat signature, for one process's repeated collects."""

    def __init__(self, max_roots: int = MAX_ROOTS, racy_ns: int = RACY_NS) -> None:
        self.max_roots = max_roots
        self.racy_ns = racy_ns
        self._roots: OrderedDict[str, _Root] = OrderedDict()
        #: Files read (not taken from a memo) since this cache was made.
        self.reads = 0
        #: Collects answered by a tree's memo (no listing, no file opened).
        self.tree_hits = 0

    def reader(self, root: str) -> CachedReader:
        """The reader for one collect under ``root``; it keeps only what that collect saw."""
        previous = self._roots.pop(root, None)
        seen: dict[str, _Memo] = {}
        self._roots[root] = _Root(seen)
        while len(self._roots) > self.max_roots:
            self._roots.popitem(last=False)
        return CachedReader(self, previous.files if previous else {}, seen)

    def unchanged_tree(self, root: str, key: tuple[object, ...]) -> Bundle | None:
        """The previous bundle of ``root`` (collected with ``key``) if nothing in it changed."""
        known = self._roots.get(root)
        tree = known.tree if known is not None else None
        if tree is None or tree.key != key:
            return None
        try:  # file_signature of each, inline: this loop is most of a warm hit's time
            now = [
                (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                for st in map(os.stat, tree.paths)
            ]
        except OSError:
            return None  # gone or unreadable: the full collect says why
        if now != tree.signatures:
            return None
        self._roots.move_to_end(root)
        self.tree_hits += 1
        return tree.bundle

    def remember_tree(
        self, root: str, key: tuple[object, ...], bundle: Bundle, trail: Trail, files: list[str]
    ) -> None:
        """Keep ``bundle`` as the tree's memo if the walk and every file read are settled."""
        known = self._roots.get(root)
        if known is None or trail.linked:
            return
        signed = [known.files[real].signature for real in files if real in known.files]
        if len(signed) < len(files):
            return  # a file changed just before it was read: read it again next time
        if not all(settled(st, trail.at, self.racy_ns) for _path, st in trail.dirs):
            return
        signatures = [file_signature(st) for _path, st in trail.dirs] + signed
        if local_devices({signature[0] for signature in signatures}):
            paths = tuple(path for path, _st in trail.dirs) + tuple(files)
            known.tree = _Tree(key, bundle, paths, signatures)


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
            signature = file_signature(st)
            memo = self.previous.get(real)
            if memo is not None and memo.signature == signature:
                self.seen[real] = memo
                return memo.source
            read_at = time.time_ns()
            source = Source.of(_read(fh, st.st_size, limit))
        self.cache.reads += 1
        # A write during the read changes the ctime: the memo then never matches again.
        if settled(st, read_at, self.cache.racy_ns) and len(source.data) == st.st_size:
            self.seen[real] = _Memo(signature, source)
        return source
