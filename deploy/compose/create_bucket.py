"""Create the bucket of ``SCSSQ_STORE`` (``s3://bucket/prefix``) if it does not exist.

Run once by docker-compose's ``s3-init`` service, with the workers' image and
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), before any worker
starts. Idempotent: an existing bucket is fine. Retries while the store is still
starting, then fails loudly (exit 1) so ``docker compose up`` shows why the
workers did not start. Exit 2 for a ``SCSSQ_STORE`` that is not an S3 URL.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

#: How long to keep trying while the store comes up, in seconds.
DEADLINE = float(os.environ.get("CREATE_BUCKET_DEADLINE", "60"))


def bucket_of(store_url: str) -> str:
    parts = urlsplit(store_url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"SCSSQ_STORE={store_url!r} is not an s3://bucket/prefix URL")
    return parts.netloc


def ensure_bucket(client: object, bucket: str) -> str:
    """Create ``bucket`` unless it exists; returns what happened."""
    try:
        client.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        return "exists"
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
        return "exists"
    return "created"


def main() -> int:
    try:
        bucket = bucket_of(os.environ.get("SCSSQ_STORE", ""))
    except ValueError as e:
        print(f"create_bucket: {e}", file=sys.stderr)
        return 2
    client = boto3.client(
        "s3", config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
    )
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            outcome = ensure_bucket(client, bucket)
            print(f"create_bucket: bucket {bucket} {outcome}")
            return 0
        except (BotoCoreError, ClientError) as e:
            if time.monotonic() > deadline:
                print(f"create_bucket: bucket {bucket}: {e}", file=sys.stderr)
                return 1
            time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
