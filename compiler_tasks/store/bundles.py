"""Bundles sent through the artifact store: believed only if they hash to their digest.

A client uploads a big bundle create-once to ``bundles/<digest>.tar.gz``, shared by
every submit of those sources. Anyone holding the client credential can write that
name first, with garbage, and create-once then refuses the honest upload; no client
can read or overwrite it (deploy/s3/client-policy.json). So a client whose create-once
was refused also uploads under its submit's own name, which no one knew before, and
says so in its request (``own_upload``). The worker takes the first of those names
that hashes to the request's digest; one that does not is treated as absent, never
trusted nor blamed on the sender: with none, the request is answered to its own
submitter alone (exit 3, BundleMissing), the key's other waiters keep waiting.
"""

from __future__ import annotations

from ..bundle.archive import archive_limit
from ..bundle.collect import read_archive
from ..bundle.model import Bundle
from ..errors import ArtifactMissing, BundleMissing, InvalidInput
from ..keys import bundle_path
from ..settings import Settings
from .base import Store


def upload_bundle(store: Store, digest: str, submit: str, archive: bytes) -> bool:
    """Upload ``archive``; True when it went under the submit's own name too."""
    if store.put_once(bundle_path(digest), archive):
        return False
    store.put_once(bundle_path(digest, submit), archive)
    return True


def stored_bundle(store: Store, path: str, digest: str, settings: Settings) -> Bundle | None:
    """The bundle stored at ``path`` if it is there and hashes to ``digest``, else None."""
    max_bytes, max_files = settings.max_bundle_bytes, settings.max_bundle_files
    try:
        data = store.get(path, limit=archive_limit(max_bytes, max_files))
        bundle = read_archive(data, max_bytes=max_bytes, max_files=max_files)
    except (ArtifactMissing, InvalidInput):  # absent, too large or not an archive
        return None
    return bundle if bundle.digest == digest else None


def load_uploaded(store: Store, digest: str, submit: str, own: bool, settings: Settings) -> Bundle:
    """The request's uploaded bundle (its own name first); ArtifactMissing if none hashes
    to ``digest``."""
    paths = ([bundle_path(digest, submit)] if own else []) + [bundle_path(digest)]
    for path in paths:
        bundle = stored_bundle(store, path, digest, settings)
        if bundle is not None:
            return bundle
    raise BundleMissing(
        f"the store holds no bundle {digest[:12]} that hashes to its name (absent, or "
        "garbage another client wrote there); submit again to upload it"
    )
