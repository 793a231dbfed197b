"""Artifacts read through presigned S3 URLs with the standard library: hits without boto3.

Importing boto3 and building an S3 client costs a fresh ``scssq submit`` process about as
much as a whole Bootstrap compile (``bench/hit.py`` measures it), and a cache hit needs
one GET. So a worker whose store is S3 adds a presigned GET URL of each output to the
result it stores (``css_url``, ``map_url``; valid as long as the result, at most the 7
days SigV4 allows, and no longer than the worker's own credentials when they are
temporary), and the client reads the URL with ``urllib``.

The client uses a URL only when it names this client's own store object: the bucket and
key its ``SCSSQ_STORE`` gives for the output's path, on its own endpoint
(``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, else ``https://*.amazonaws.com``). So a
result can never make a client fetch anything else, and the URL of a worker behind
another endpoint name (docker compose's ``s3:8333``, which the host reaches as
``127.0.0.1:8333``) is simply not used. Any failure (expired URL, 404, network) returns
None too. The caller then reads through the store, which for S3 needs boto3 (the
``scssq[s3]`` extra; without it :func:`compiler_tasks.store.open_store` raises
MissingExtra, exit 2); the CSS is checked against the manifest's sha256 either way.
Only the standard library is imported here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

#: The longest validity SigV4 allows for a presigned URL, seconds.
MAX_EXPIRY = 7 * 24 * 3600
#: Seconds to connect to and read from S3 through a URL before falling back to the store.
TIMEOUT = 30.0


def expiry(result_ttl: float) -> int:
    """Seconds a worker's presigned URL stays valid: the result's TTL, at most 7 days."""
    return int(max(1, min(result_ttl, MAX_EXPIRY)))


def matches(url: str, store_url: str, path: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``url`` is a URL of ``path`` in the S3 store ``store_url`` at this client's
    endpoint (path-style or virtual-hosted addressing)."""
    env = os.environ if env is None else env
    store = urlsplit(store_url)
    if store.scheme != "s3" or not store.netloc:
        return False
    bucket, prefix = store.netloc, store.path.strip("/")
    key = f"{prefix}/{path}" if prefix else path
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or u.username or u.password or u.fragment:
        return False
    host = (u.hostname or "").lower()
    got = unquote(u.path)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        e = urlsplit(endpoint)
        ehost = (e.hostname or "").lower()
        try:
            same_port = port == e.port
        except ValueError:
            return False
        if u.scheme != e.scheme or not same_port or not ehost:
            return False
        base = e.path.rstrip("/")
        if host == ehost:
            return got == f"{base}/{bucket}/{key}"
        return host == f"{bucket}.{ehost}" and got == f"{base}/{key}"
    if u.scheme != "https" or not host.endswith(".amazonaws.com"):
        return False
    if host.startswith(f"{bucket}.s3.") or host.startswith(f"{bucket}.s3-"):
        return got == f"/{key}"
    return host.startswith(("s3.", "s3-")) and got == f"/{bucket}/{key}"


def fetch(url: str, store_url: str, path: str, *, limit: int) -> bytes | None:
    """The object's bytes through ``url``, or None (not this store's object, an error, an
    object larger than ``limit``): the caller then reads through the store."""
    if not matches(url, store_url, path):
        return None
    import ssl
    import urllib.request
    from http.client import HTTPException

    try:
        ca = os.environ.get("AWS_CA_BUNDLE")
        context = ssl.create_default_context(cafile=ca) if ca else None
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as response:
            if response.status != 200:
                return None
            data = bytes(response.read(limit + 1))
    except (OSError, ValueError, HTTPException):
        return None
    return data if len(data) <= limit else None
