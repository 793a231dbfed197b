"""What every artifact store is: the :class:`Store` interface and the checks it shares.

A store owns every byte scssq keeps outside Redis (CSS, source maps, manifests, large
bundles). Objects are named by relative POSIX paths from :mod:`compiler_tasks.keys`.
Readers never see a partial object. Failures raise ArtifactMissing (absent) or
StoreError (anything else) with a message naming the store and never a credential.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import InvalidInput, StoreError


@dataclass(frozen=True)
class StoredObject:
    """One object of a store's listing: its path, size and last write (Unix time)."""

    path: str
    size: int
    modified: float


class Store(Protocol):
    """Where artifacts live. Every ``path`` is a relative POSIX path of safe parts."""

    #: A description safe for logs and error messages, e.g. ``s3://bucket/prefix``.
    url: str

    def put(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path``, replacing any object atomically."""

    def put_once(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data``; False (and no change) if it already exists."""

    def get(self, path: str, limit: int | None = None) -> bytes:
        """The bytes at ``path``; ArtifactMissing if absent, StoreError on other failures.

        With ``limit``, an object larger than ``limit`` bytes is InvalidInput and no
        more than ``limit + 1`` bytes of it are read (a bundle uploaded by a client).
        """

    def exists(self, path: str) -> bool:
        """Whether an object exists at ``path``."""

    def delete(self, path: str) -> None:
        """Remove ``path``; nothing happens if it is absent."""

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose path starts with ``prefix`` (e.g. ``artifacts/``), in no
        particular order; objects written while it runs may or may not appear."""

    def check(self) -> str:
        """Prove the store is usable; a short description, or StoreError naming the cause."""


def verified(data: bytes, sha256: str, path: str) -> bytes:
    """``data`` if its sha256 (hex) is ``sha256``, else StoreError: the CSS is never wrong."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"artifact {path} does not match its manifest's sha256")
    return data


def within_limit(data: bytes, limit: int | None, url: str, path: str) -> bytes:
    """``data`` if it fits ``limit``; else InvalidInput naming the object."""
    if limit is not None and len(data) > limit:
        raise too_large(url, path, limit)
    return data


def too_large(url: str, path: str, limit: int) -> InvalidInput:
    return InvalidInput(f"store {url}: object {path!r} is larger than {limit} bytes")
