"""The artifact store: one interface (:class:`Store`), two backends.

Owns every byte scssq keeps outside Redis (CSS, source maps, manifests, large bundles).
Objects are named by relative POSIX paths from :mod:`compiler_tasks.keys`, validated again
here, so no store reads or writes outside its root directory or key prefix.

* :class:`FileStore`, ``file:///abs/dir`` (the default): ``put`` renames a temporary file
  over the target; ``put_once`` hard-links one to it (fails if it exists).
* :class:`compiler_tasks.s3store.S3Store`, ``s3://bucket/optional/prefix``: boto3
  configured by the standard AWS chain (``AWS_ENDPOINT_URL``, ...); ``put_once`` is
  PutObject with ``If-None-Match: *``. Its module (and boto3) is imported only when an
  S3 store is opened.

Readers never see a partial object. Failures raise ArtifactMissing (absent) or StoreError
(anything else) with a message naming the store and never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
from typing import Protocol
from urllib.parse import unquote, urlsplit

from .errors import ArtifactMissing, ConfigError, InvalidInput, StoreError
from .fileio import OPEN_READ, read_fd
from .keys import validate_relpath
from .settings import redact_url

#: Mode of stored files: readable by other users of the machine (e.g. a web server).
FILE_MODE = 0o644
#: Temporary files are named this + random characters. ':' never occurs in a valid path
#: part, so no caller can name (read, overwrite, delete) a half-written temporary file.
_TMP_PREFIX = ".scssq-tmp:"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


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

    def check(self) -> str:
        """Prove the store is usable; a short description, or StoreError naming the cause."""


class FileStore:
    """Artifacts in a local directory (created if missing)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.url = "file://" + self.root
        try:
            os.makedirs(self.root, exist_ok=True)
            self._real_root = os.path.realpath(self.root)
        except OSError as e:
            raise StoreError(f"store {self.url}: cannot create its directory: {e}") from e

    def _path(self, path: str) -> str:
        """The file for ``path`` (a valid relative path), not resolved."""
        validate_relpath(path, "store path")
        return os.path.join(self.root, *path.split("/"))

    def _target(self, path: str) -> str:
        """The file for ``path``; refuses bad paths and symlinks leading out of the root."""
        target = self._path(path)
        if not os.path.realpath(target).startswith(self._real_root + os.sep):
            raise StoreError(f"store {self.url}: {path!r} leads outside the store (symlink)")
        return target

    def _fail(self, action: str, path: str, e: OSError) -> StoreError:
        return StoreError(f"store {self.url}: cannot {action} {path!r}: {e.strerror or e}")

    def _write_temp(self, target: str, data: bytes, path: str) -> str:
        """A new temporary file beside ``target`` holding ``data``."""
        directory = os.path.dirname(target)
        tmp = ""
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), FILE_MODE)
                f.write(data)
            return tmp
        except OSError as e:
            if tmp:
                _unlink_quietly(tmp)
            raise self._fail("write", path, e) from e

    def put(self, path: str, data: bytes) -> None:
        target = self._target(path)
        tmp = self._write_temp(target, data, path)
        try:
            os.replace(tmp, target)  # atomic: readers see the old file or the new one
        except OSError as e:
            _unlink_quietly(tmp)
            raise self._fail("write", path, e) from e

    def put_once(self, path: str, data: bytes) -> bool:
        target = self._target(path)
        tmp = self._write_temp(target, data, path)
        try:
            os.link(tmp, target)  # atomic create-once: fails if target exists
            return True
        except FileExistsError:
            return False
        except OSError as e:
            raise self._fail("write", path, e) from e
        finally:
            _unlink_quietly(tmp)

    def get(self, path: str, limit: int | None = None) -> bytes:
        data = self._read(self._target(path), path, limit)
        return within_limit(data, limit, self.url, path)

    def _read(self, target: str, path: str, limit: int | None = None) -> bytes:
        """The file's bytes (at most ``limit`` + 1). Anything but a regular file is
        refused, never waited on (FIFO)."""
        try:
            fd = os.open(target, OPEN_READ)
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(target)
                if not stat.S_ISREG(st.st_mode):
                    raise StoreError(f"store {self.url}: {path!r} is not a regular file")
                return read_fd(fd, st.st_size, limit)
            finally:
                os.close(fd)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise ArtifactMissing(f"store {self.url} has no object {path!r}") from e
        except OSError as e:
            raise self._fail("read", path, e) from e

    def exists(self, path: str) -> bool:
        target = self._target(path)
        try:
            return stat.S_ISREG(os.stat(target).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            raise self._fail("stat", path, e) from e

    def delete(self, path: str) -> None:
        target = self._target(path)
        try:
            os.unlink(target)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as e:
            raise self._fail("delete", path, e) from e

    def check(self) -> str:
        try:
            os.makedirs(self.root, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise StoreError(f"store {self.url} is not writable: {e.strerror or e}") from e
        return f"local store {self.root} (writable)"


def verified(data: bytes, sha256: str, path: str) -> bytes:
    """``data`` if its sha256 (hex) is ``sha256``, else StoreError: the CSS is never wrong."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"artifact {path} does not match its manifest's sha256")
    return data


def get_verified(store: Store, path: str, sha256: str) -> bytes:
    """The object at ``path`` in ``store``, checked against ``sha256`` (hex)."""
    return verified(store.get(path), sha256, path)


def within_limit(data: bytes, limit: int | None, url: str, path: str) -> bytes:
    """``data`` if it fits ``limit``; else InvalidInput naming the object."""
    if limit is not None and len(data) > limit:
        raise too_large(url, path, limit)
    return data


def too_large(url: str, path: str, limit: int) -> InvalidInput:
    return InvalidInput(f"store {url}: object {path!r} is larger than {limit} bytes")


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def open_store(
    url: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    retries: int = 2,
) -> Store:
    """The store for ``url``: ``file:///abs/dir`` or ``s3://bucket/optional/prefix``.

    Timeouts (seconds) and ``retries`` (extra attempts per request) apply to S3 only.
    Raises ConfigError for a URL that names no usable store.
    """
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"store URL {shown!r} must not have a query or fragment")
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigError(f"store URL {shown!r}: use file:///absolute/path")
        return FileStore(path)
    if parts.scheme == "s3":
        if "@" in parts.netloc:
            raise ConfigError(
                f"store URL {shown!r} must not hold credentials; use the AWS_* variables"
            )
        bucket = parts.netloc
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"store URL {shown!r}: {bucket!r} is not a valid S3 bucket name "
                "(3-63 lowercase letters, digits, '.' or '-')"
            )
        prefix = parts.path.strip("/")
        if prefix:
            try:
                validate_relpath(prefix, "S3 prefix")
            except InvalidInput as e:
                raise ConfigError(f"store URL {shown!r}: {e}") from e
        from .s3store import S3Store  # imports boto3: only for an S3 store

        return S3Store(
            bucket,
            prefix,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=retries,
        )
    raise ConfigError(
        f"store URL {shown!r} has an unknown scheme; use file:///absolute/path "
        "or s3://bucket/optional/prefix"
    )
