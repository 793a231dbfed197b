"""Reading a bundle's source files (bytes and sha256).

Every collect reads every file again: what is bundled is always what the files hold now.
Which files are read is :mod:`.rule`'s to say.
"""

from __future__ import annotations

import os

from .fileio import read_fd
from .model import Source


def read_source(real: str, limit: int) -> Source:
    """Read ``real``, at most ``limit + 1`` bytes (the caller checks its limit)."""
    with open(real, "rb") as fh:
        return Source.of(read_fd(fh.fileno(), os.fstat(fh.fileno()).st_size, limit))
