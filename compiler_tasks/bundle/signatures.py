"""Stat signatures: what proves that a file or folder did not change since it was seen.

A signature is (device, inode, size, mtime_ns, ctime_ns), the fields git's index keeps.
Any write to a file, and any rename over it, changes its ctime, which no program can
set back; adding, removing or renaming an entry in a folder changes the folder's mtime
and ctime (POSIX). Two rules keep a remembered signature honest:

* **racy** (git's term): a file changed within :data:`RACY_NS` of the moment it was
  seen could be changed again in the same timestamp tick without its signature moving,
  so it is not :func:`settled` and nothing is remembered for it;
* **local**: ``stat`` of a network or FUSE mount may answer from a cache, so a plain
  ``stat`` stands for a file's content only on filesystems known to be local
  (:func:`local_devices`, from ``/proc/self/mountinfo``). Elsewhere the signature is
  taken from the opened file (``fstat`` after ``open``, which makes a network mount
  revalidate: close-to-open consistency).

Assumed, as by git: the filesystem's clock is within :data:`RACY_NS` of this machine's,
and ctime is the change time (not on Windows before Python 3.12).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

#: Nanoseconds a file must have been left alone before it was seen for its signature to
#: be trusted: well above any filesystem's timestamp tick (ext4, xfs, tmpfs take the
#: kernel's coarse clock, a few ms; FAT has 2 s mtimes) and small clock adjustments.
RACY_NS = 3_000_000_000
#: Filesystem types (``/proc/self/mountinfo``) whose ``stat`` is authoritative and whose
#: folders' mtimes follow their entries: kernel-local filesystems, never network or FUSE.
LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs"}
)
#: Where Linux lists this process's mounts (absent elsewhere: nothing counts as local).
MOUNTINFO = "/proc/self/mountinfo"

#: A file's or folder's signature: device, inode, size, mtime_ns, ctime_ns.
FileSignature = tuple[int, int, int, int, int]


def file_signature(st: os.stat_result) -> FileSignature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(st: os.stat_result, at: int, racy_ns: int = RACY_NS) -> bool:
    """Whether a file stat'ed at ``at`` (time.time_ns) was last changed well before then."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < at - racy_ns


def local_devices(devices: Iterable[int], mountinfo: str | None = None) -> bool:
    """Whether every device is a mount of a :data:`LOCAL_FILESYSTEMS` type.

    False where ``mountinfo`` (default :data:`MOUNTINFO`) cannot be read (not Linux) or
    a device is not listed in it (e.g. a btrfs subvolume that is not itself mounted).
    """
    wanted = {f"{os.major(dev)}:{os.minor(dev)}" for dev in devices}
    try:
        with open(mountinfo or MOUNTINFO, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return False
    for line in lines:
        # id parent major:minor root mount-point options [optional...] - type source ...
        fields, _sep, rest = line.partition(" - ")
        parts, kind = fields.split(), rest.split()[:1]
        if len(parts) >= 3 and parts[2] in wanted and kind:
            if kind[0] not in LOCAL_FILESYSTEMS:
                return False
            wanted.discard(parts[2])
    return not wanted
