"""The S3 backend of the artifact store (:mod:`compiler_tasks.store`).

``s3://bucket/optional/prefix``: boto3 configured by the standard AWS chain
(``AWS_ENDPOINT_URL``, credentials, region); ``put_once`` is PutObject with
``If-None-Match: *``. This module is imported, and boto3 with it, only when an S3 store
is opened (:func:`compiler_tasks.store.open_store`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..errors import ArtifactMissing, InvalidInput, StoreError
from ..keys import validate_relpath
from ..settings import redact_url
from .base import StoredObject, too_large, within_limit

T = TypeVar("T")

#: S3 answers a conditional write racing another one with 409; it is worth retrying.
_CONFLICT_RETRIES = 3


class S3Store:
    """Artifacts in an S3 bucket (or any S3-compatible server), under an optional prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int = 2,
    ) -> None:
        import boto3  # lazily: a local store must not pay for importing boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError, OSError)
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # botocore's max_attempts counts retries, not the first attempt.
            retries={"max_attempts": retries, "mode": "standard"},
        )
        try:
            # A private session: boto3's default session is not thread-safe to build.
            self._client: Any = boto3.session.Session().client("s3", config=config)
        except self._errors as e:
            raise StoreError(f"store {self.url}: cannot configure the S3 client: {e}") from e
        endpoint = getattr(self._client.meta, "endpoint_url", None) or "AWS"
        self._where = f"store {self.url} (endpoint {redact_url(str(endpoint))})"

    def _key(self, path: str) -> str:
        validate_relpath(path, "store path")
        return f"{self.prefix}/{path}" if self.prefix else path

    @staticmethod
    def _code(e: Exception) -> tuple[str, int]:
        response = getattr(e, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code, status

    def _call(self, action: str, path: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """``fn(Bucket=..., **kwargs)``; a missing object is ArtifactMissing, other failures
        StoreError."""
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except self._errors as e:
            code, status = self._code(e)
            if code in ("NoSuchKey", "404", "NotFound") or (
                status == 404 and code != "NoSuchBucket"
            ):
                raise ArtifactMissing(f"{self._where} has no object {path!r}") from e
            raise StoreError(f"{self._where}: cannot {action} {path!r}: {e}") from e

    def put(self, path: str, data: bytes) -> None:
        key = self._key(path)
        self._call("write", path, self._client.put_object, Key=key, Body=data)

    def put_once(self, path: str, data: bytes) -> bool:
        key = self._key(path)
        attempt = 0
        while True:
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
                return True
            except self._errors as e:
                code, status = self._code(e)
                if code == "PreconditionFailed" or status == 412:
                    return False
                # 409: a concurrent conditional write of this key is in flight and may still
                # fail; AWS says retry. The retry answers 412 once that write has landed.
                conflict = code == "ConditionalRequestConflict" or status == 409
                if not conflict or attempt >= _CONFLICT_RETRIES:
                    raise StoreError(f"{self._where}: cannot create {path!r}: {e}") from e
            time.sleep(0.05 * 2**attempt)
            attempt += 1

    def get(self, path: str, limit: int | None = None) -> bytes:
        key = self._key(path)

        def read(**kwargs: Any) -> bytes:
            response = self._client.get_object(**kwargs)
            body = response["Body"]
            try:
                if limit is None:
                    return bytes(body.read())
                if int(response.get("ContentLength") or 0) > limit:
                    raise too_large(self.url, path, limit)  # refused before reading the body
                return within_limit(bytes(body.read(limit + 1)), limit, self.url, path)
            finally:
                body.close()

        return self._call("read", path, read, Key=key)

    def presign_get(self, path: str, seconds: int) -> str | None:
        """A URL that GETs ``path`` for ``seconds`` without credentials (signed here, no
        request made), or None when this client cannot sign. See :mod:`.presigned`."""
        try:
            url = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(path)},
                ExpiresIn=seconds,
            )
        except self._errors:
            return None
        return str(url)

    def exists(self, path: str) -> bool:
        key = self._key(path)
        try:
            self._call("look up", path, self._client.head_object, Key=key)
        except ArtifactMissing:
            return False
        return True

    def delete(self, path: str) -> None:
        key = self._key(path)
        self._call("delete", path, self._client.delete_object, Key=key)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Objects under ``prefix`` (ListObjectsV2, 1000 a page); keys that are no
        store path (e.g. written by another tool) are left out."""
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    path = str(item["Key"])[len(base) :]
                    try:
                        validate_relpath(path, "store path")
                    except InvalidInput:
                        continue
                    modified = item["LastModified"].timestamp()
                    yield StoredObject(path, int(item["Size"]), modified)
        except self._errors as e:
            raise StoreError(f"{self._where}: cannot list {prefix!r}: {e}") from e

    def check(self) -> str:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as e:
            code, status = self._code(e)
            if status == 404 or code in ("404", "NoSuchBucket", "NotFound"):
                cause = f"bucket {self.bucket!r} does not exist"
            elif status == 403 or code in ("403", "AccessDenied", "Forbidden"):
                cause = f"access to bucket {self.bucket!r} denied (check the AWS_* credentials)"
            else:
                cause = str(e)
            raise StoreError(f"{self._where} is not usable: {cause}") from e
        return f"S3 bucket {self.bucket!r} reachable ({self._where})"
