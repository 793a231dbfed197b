"""Hand-made tar.gz archives for hostile-input tests: any member type, any name."""

from __future__ import annotations

import gzip
import io
import tarfile


def targz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar.gz of raw members (any type, any name), as an attacker would write it."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def regular(name: str, data: bytes = b".a { b: c; }\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info, None
