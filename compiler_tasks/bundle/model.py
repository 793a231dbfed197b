"""The bundle's values: one source file as bundled (:class:`Source`), and the set of
files one submit sends with their content digest (:class:`Bundle`).

The digest is over (path, sha256) pairs (:func:`compiler_tasks.keys.content_digest`);
the tar archive (:mod:`.archive`) is only transport. How a bundle is collected from a
directory or read from an archive is :mod:`.collect`; reading one source file is
:mod:`.sources`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..keys import content_digest


@dataclass(frozen=True)
class Source:
    """One file as bundled: its bytes and their sha256 (hex)."""

    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Source:
        return cls(data, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Bundle:
    """Source files by relative POSIX path, and their content digest."""

    #: Read-only: the digest was computed over these files.
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
        """A deterministic tar.gz of the files (same files, same bytes), for transport."""
        from . import archive

        return archive.pack(self.files)
