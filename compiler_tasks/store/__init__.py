"""The artifact store: a folder or an S3 bucket, and presigned reads without boto3.

* :mod:`.base`: the :class:`Store` interface and the checks both backends share.
* :mod:`.file`: :class:`~.file.FileStore`, ``file:///abs/dir`` (the default).
* :mod:`.s3`: :class:`~.s3.S3Store`, ``s3://bucket/optional/prefix``; its module (and
  boto3) is imported only when an S3 store is opened.
* :mod:`.presigned`: artifacts read through presigned URLs with the standard library.
* :mod:`.bundles`: bundles uploaded by clients, believed only if they hash to their digest.

:func:`open_store` picks the backend for a URL.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, InvalidInput, require
from ..keys import validate_relpath
from ..settings import redact_url
from .base import Store, verified
from .file import FileStore

__all__ = ["Store", "get_verified", "open_store", "verified"]

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def get_verified(store: Store, path: str, sha256: str) -> bytes:
    """The object at ``path`` in ``store``, checked against ``sha256`` (hex)."""
    return verified(store.get(path), sha256, path)


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
        require("boto3", "s3", f"store {shown} (an S3 store read or written directly)")
        from .s3 import S3Store  # imports boto3: only for an S3 store

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
