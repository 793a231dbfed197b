"""The folder backend of the artifact store: ``file:///abs/dir`` (the default).

``put`` renames a temporary file over the target; ``put_once`` hard-links one to it
(fails if it exists), so readers never see a partial object. Objects are named by
relative POSIX paths, validated again here, so no read or write leaves the root
directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator

from ..bundle.fileio import OPEN_READ, read_fd
from ..errors import ArtifactMissing, InvalidInput, StoreError
from ..keys import validate_relpath
from .base import StoredObject, within_limit

#: Mode of stored files: readable by other users of the machine (e.g. a web server).
FILE_MODE = 0o644
#: Temporary files are named this + random characters. ':' never occurs in a valid path
#: part, so no caller can name (read, overwrite, delete) a half-written temporary file.
_TMP_PREFIX = ".scssq-tmp:"


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

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Regular files under the folder ``prefix`` names (a relative path ending in
        ``/``); temporary files, links and names no store path can have are left out."""
        top = os.path.join(self.root, *prefix.strip("/").split("/")) if prefix else self.root

        def failed(e: OSError) -> None:
            if not isinstance(e, FileNotFoundError):  # a folder removed while listing
                raise self._fail("list", prefix, e)

        for directory, _dirs, names in os.walk(top, onerror=failed):
            for name in names:
                found = self._listed(os.path.join(directory, name))
                if found is not None and found.path.startswith(prefix):
                    yield found

    def _listed(self, full: str) -> StoredObject | None:
        """The object at ``full`` (a file under the root), or None if it is none."""
        path = os.path.relpath(full, self.root).replace(os.sep, "/")
        try:
            validate_relpath(path, "store path")
            st = os.lstat(full)
        except (InvalidInput, FileNotFoundError):  # a temporary file, or gone meanwhile
            return None
        except OSError as e:
            raise self._fail("stat", path, e) from e
        if not stat.S_ISREG(st.st_mode):
            return None
        return StoredObject(path, st.st_size, st.st_mtime)

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
