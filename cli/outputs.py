"""What a submit produced, and writing a result's outputs under ``--out``.

Used by submits (:mod:`cli.client`) and ``fetch`` (:mod:`cli.queries`); imports
neither redis-py nor boto3.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler_tasks.bundle.fileio import OPEN_READ, read_fd
from compiler_tasks.errors import InfrastructureError, InvalidInput
from compiler_tasks.settings import Settings
from compiler_tasks.store import Store, get_verified, open_store, presigned, verified

#: Reads one output of a result: (the output's manifest entry, "css" or "map") -> bytes,
#: the CSS checked against the manifest's sha256 (:meth:`Artifacts.read`).
CheckedReader = Callable[[dict[str, Any], str], bytes]


@dataclass
class EntryOutput:
    entry: str
    css: Path
    map: Path | None
    size: int
    sha256: str


@dataclass
class SubmitResult:
    """What one submit produced; ``outcome`` is compiled, shared, cached or queued."""

    project: str
    commit: str
    key: str
    digest: str
    outcome: str
    entries: list[EntryOutput] = field(default_factory=list)
    warnings: str = ""
    conflict: str | None = None
    seconds: float = 0.0


def write_outputs(
    result: dict[str, Any],
    out: Path,
    read: CheckedReader,
    targets: Mapping[str, Path] | None = None,
) -> list[EntryOutput]:
    """Copy a result's outputs under ``out`` (an entry in ``targets`` to its own file);
    ``read`` returns each CSS checked against its manifest's sha256 (StoreError on a
    mismatch: the CSS is never wrong)."""
    written = []
    for entry, info in sorted(result.get("outputs", {}).items()):
        css = read(info, "css")
        target = (targets or {}).get(entry) or out.joinpath(*entry.split("/")).with_suffix(".css")
        write_output(target, css)
        map_target = None
        if info.get("map"):
            map_target = target.with_name(target.name + ".map")
            write_output(map_target, read(info, "map"))
        written.append(EntryOutput(entry, target, map_target, len(css), info["sha256"]))
    return written


def write_output(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (making its folder); a regular file that already holds
    exactly ``data`` is only touched (its mtime set to now, as a write would, so
    make-style tools see it as new), not rewritten: file watchers see an attribute
    change, not a modification.

    InvalidInput when ``path`` is a folder, FIFO or socket (never waited on), or
    ``--out`` cannot hold it (not a folder, no permission, read-only); other write
    failures (disk full, I/O error) are an InfrastructureError.
    """
    try:
        if _holds(path, data):
            os.utime(path)
            return
    except OSError:
        pass  # absent (the write makes it) or unreadable (the write says why)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        message = f"cannot write output {str(path)!r}: {e.strerror or e}"
        if e.errno in _OUT_ERRORS:
            raise InvalidInput(f"{message}; check --out") from e
        raise InfrastructureError(message) from e


#: Write failures that say ``--out`` is not usable (rather than the machine failing).
_OUT_ERRORS = frozenset(
    {
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)


def _holds(path: Path, data: bytes) -> bool:
    """Whether ``path`` is a regular file holding exactly ``data`` (only a regular file of
    that size is opened: a device, e.g. /dev/null, is written to, never read)."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        raise InvalidInput(
            f"output {str(path)!r} exists and is not a file; remove it or choose another --out"
        )
    if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
        return False
    fd = os.open(path, OPEN_READ)  # a FIFO swapped in since the stat does not block it
    try:
        return read_fd(fd, len(data)) == data
    finally:
        os.close(fd)


class Artifacts:
    """Reads a result's outputs: through the presigned URL a worker added for an S3
    store, else (or when that fails) through the store.

    Only the first download uses URLs: a one-shot ``scssq submit`` they serve never
    imports boto3, a client that downloads again opens the store once and keeps its
    connections. Reading through an S3 store needs boto3 (the ``scssq[s3]`` extra).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._downloaded = False

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings.store_url)
        return self._store

    def download(
        self, result: dict[str, Any], out: Path, targets: Mapping[str, Path] | None = None
    ) -> list[EntryOutput]:
        """Copy a result's outputs under ``out`` (or to ``targets``), checking each CSS."""
        written = write_outputs(result, out, self.read, targets)
        self._downloaded = True
        return written

    def read(self, info: dict[str, Any], field: str) -> bytes:
        """One output of a result (``field`` "css" checked against its sha256)."""
        url = info.get(f"{field}_url")
        if isinstance(url, str) and self._store is None and not self._downloaded:
            data = presigned.fetch(
                url, self.settings.store_url, info[field], limit=self.settings.max_output_bytes
            )
            if data is not None:
                return verified(data, info["sha256"], info[field]) if field == "css" else data
        if field == "css":
            return get_verified(self.store, info[field], info["sha256"])
        return self.store.get(info[field])
