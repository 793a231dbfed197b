"""Reading a bundle's source files (bytes and sha256), and the stems a stylesheet imports.

Every collect reads every file again: what is bundled is always what the files hold now.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from .fileio import read_fd

_IMPORT_RE = re.compile(r"@(?:import|use|forward)\s+([^;\n]+)")
_QUOTED_RE = re.compile(r"""["']([^"']+)["']""")


@dataclass(frozen=True)
class Source:
    """One file as bundled: its bytes and their sha256 (hex)."""

    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Source:
        return cls(data, hashlib.sha256(data).hexdigest())


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
        return Source.of(read_fd(fh.fileno(), os.fstat(fh.fileno()).st_size, limit))
