"""The folder backend of the artifact store: ``file:///abs/dir`` (the default).

``put`` renames a temporary file over the target; ``put_once`` hard-links one to it
(fails if it exists), so readers never see a partial object. Objects are named by
relative POSIX paths, validated again here, so no read or write leaves the root
directory. An artifact checked against its manifest's sha256 is remembered under its
stat signature (:mod:`compiler_tasks.bundle.signatures`) and not hashed again.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time

from ..bundle.fileio import NOFOLLOW, OPEN_READ, read_fd
from ..bundle.signatures import RACY_NS, FileSignature, file_signature, settled
from ..errors import ArtifactMissing, StoreError
from ..keys import validate_relpath
from .base import verified, within_limit

#: Mode of stored files: readable by other users of the machine (e.g. a web server).
FILE_MODE = 0o644
#: Temporary files are named this + random characters. ':' never occurs in a valid path
#: part, so no caller can name (read, overwrite, delete) a half-written temporary file.
_TMP_PREFIX = ".scssq-tmp:"

#: Objects a :class:`FileStore` remembers as checked (then it starts over).
MAX_VERIFIED = 4096


class FileStore:
    """Artifacts in a local directory (created if missing)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.url = "file://" + self.root
        #: File -> (signature, sha256) of objects :meth:`get_verified` checked.
        self._verified: dict[str, tuple[FileSignature, str]] = {}
        #: How long an object must have been left alone to be remembered as checked.
        self.racy_ns = RACY_NS
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
        data, _st, _at = self._read(self._target(path), path, limit)
        return within_limit(data, limit, self.url, path)

    def _read(
        self, target: str, path: str, limit: int | None = None
    ) -> tuple[bytes, os.stat_result, int]:
        """The file's bytes (at most ``limit`` + 1), its ``fstat`` and when it was taken
        (time.time_ns). Anything but a regular file is refused, never waited on (FIFO)."""
        try:
            fd = os.open(target, OPEN_READ)
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(target)
                if not stat.S_ISREG(st.st_mode):
                    raise StoreError(f"store {self.url}: {path!r} is not a regular file")
                at = time.time_ns()
                return read_fd(fd, st.st_size, limit), st, at
            finally:
                os.close(fd)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise ArtifactMissing(f"store {self.url} has no object {path!r}") from e
        except OSError as e:
            raise self._fail("read", path, e) from e

    def get_verified(self, path: str, sha256: str) -> bytes:
        """The object at ``path``, checked against ``sha256`` (hex) like :func:`verified`.

        Objects are never modified in place (``put`` renames a new file over the old
        one, a new inode), so a file this store checked before, whose signature is
        unchanged and was settled then (:mod:`compiler_tasks.bundle.signatures`), is not
        hashed again; nor is its path resolved again (:meth:`_known`).
        """
        known = self._known(path, sha256)
        if known is not None:
            return known
        target = self._target(path)
        data, st, at = self._read(target, path)
        verified(data, sha256, path)
        if settled(st, at, self.racy_ns) and len(data) == st.st_size:
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()
            self._verified[target] = (file_signature(st), sha256)
        return data

    def _known(self, path: str, sha256: str) -> bytes | None:
        """The object if the file at ``path`` is one this store checked against
        ``sha256`` (inside the store: :meth:`_target`) and it did not change since, else
        None (the caller takes the long way).

        The path is not resolved again: ``stat`` must find the checked file there before
        it is opened, and the file opened must still be it (``fstat``; a link swapped in
        as the last component in between is not followed).
        """
        target = self._path(path)
        remembered = self._verified.get(target)
        if remembered is None or remembered[1] != sha256:
            return None
        try:
            if file_signature(os.stat(target)) != remembered[0]:
                return None
            fd = os.open(target, OPEN_READ | NOFOLLOW)
            try:
                st = os.fstat(fd)
                if file_signature(st) != remembered[0]:
                    return None
                data = read_fd(fd, st.st_size)
            finally:
                os.close(fd)
        except OSError:
            return None
        return data if len(data) == st.st_size else None

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


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
