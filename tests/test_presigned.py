"""Hits read S3 artifacts through presigned URLs, never anything but the store's object."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from cli.client import Client
from cli.outputs import Artifacts
from compiler_tasks import presigned
from compiler_tasks.errors import ArtifactMissing
from compiler_tasks.s3store import S3Store
from compiler_tasks.settings import Settings
from compiler_tasks.storage import open_store

STORE = "s3://bucket/pre/fix"
PATH = "artifacts/ab/cd/main.css"
LOCAL = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}


@pytest.mark.parametrize(
    ("url", "env", "ok"),
    [
        (
            "http://127.0.0.1:9000/bucket/pre/fix/artifacts/ab/cd/main.css?X-Amz-Signature=1",
            LOCAL,
            True,
        ),
        ("http://bucket.127.0.0.1:9000/pre/fix/artifacts/ab/cd/main.css?a=1", LOCAL, True),
        ("http://127.0.0.1:9000/other/pre/fix/artifacts/ab/cd/main.css", LOCAL, False),
        ("http://127.0.0.1:9000/bucket/pre/fix/artifacts/ab/cd/other.css", LOCAL, False),
        ("http://127.0.0.1:9001/bucket/pre/fix/artifacts/ab/cd/main.css", LOCAL, False),
        ("https://127.0.0.1:9000/bucket/pre/fix/artifacts/ab/cd/main.css", LOCAL, False),
        ("http://evil.example/bucket/pre/fix/artifacts/ab/cd/main.css", LOCAL, False),
        ("http://u:p@127.0.0.1:9000/bucket/pre/fix/artifacts/ab/cd/main.css", LOCAL, False),
        ("http://127.0.0.1:9000/bucket/pre/fix/artifacts/ab/cd/../../x.css", LOCAL, False),
        ("file:///bucket/pre/fix/artifacts/ab/cd/main.css", LOCAL, False),
        ("https://bucket.s3.us-east-1.amazonaws.com/pre/fix/artifacts/ab/cd/main.css?a", {}, True),
        ("https://s3.amazonaws.com/bucket/pre/fix/artifacts/ab/cd/main.css?a", {}, True),
        ("http://bucket.s3.amazonaws.com/pre/fix/artifacts/ab/cd/main.css", {}, False),
        (
            "https://bucket.s3.amazonaws.com.evil.example/pre/fix/artifacts/ab/cd/main.css",
            {},
            False,
        ),
        ("https://other.s3.amazonaws.com/pre/fix/artifacts/ab/cd/main.css", {}, False),
        ("https://127.0.0.1:9000/bucket/pre/fix/artifacts/ab/cd/main.css", {}, False),
    ],
)
def test_only_urls_of_the_clients_own_store_object_are_used(
    url: str, env: dict[str, str], ok: bool
) -> None:
    assert presigned.matches(url, STORE, PATH, env) is ok


def test_no_url_for_a_local_store() -> None:
    assert not presigned.matches("http://127.0.0.1:9000/bucket/x", "file:///tmp/s", "x", LOCAL)


def test_expiry_is_the_result_ttl_at_most_seven_days() -> None:
    assert presigned.expiry(3600) == 3600
    assert presigned.expiry(30 * 24 * 3600) == presigned.MAX_EXPIRY


class _NoStore:
    url = "s3://nowhere"

    def get(self, path: str, limit: int | None = None) -> bytes:
        raise AssertionError(f"read {path} through the store (boto3) instead of the URL")


def test_client_reads_a_presigned_url_without_the_store(
    s3_store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(s3_store_url)
    assert isinstance(store, S3Store)
    css = b".a { b: c; }\n"
    store.put(PATH, css)
    store.put(PATH + ".map", b"{}")
    url = store.presign_get(PATH, 60)
    assert url is not None and presigned.fetch(url, s3_store_url, PATH, limit=1 << 20) == css
    assert presigned.fetch(url, s3_store_url, PATH, limit=4) is None  # larger than the limit
    info: dict[str, Any] = {
        "css": PATH,
        "map": PATH + ".map",
        "sha256": hashlib.sha256(css).hexdigest(),
        "css_url": url,
        "map_url": store.presign_get(PATH + ".map", 60),
    }
    client = Client(Settings(store_url=s3_store_url))
    monkeypatch.setattr(Artifacts, "store", property(lambda self: _NoStore()))
    [written] = client.download({"outputs": {"main.scss": info}}, tmp_path / "out")
    assert written.css.read_bytes() == css
    assert written.map is not None and written.map.read_bytes() == b"{}"
    # A client that downloads again opens the store once and keeps its connections.
    with pytest.raises(AssertionError, match="through the store"):
        client.download({"outputs": {"main.scss": info}}, tmp_path / "again")


def test_a_failing_url_falls_back_to_the_store(s3_store_url: str, tmp_path: Path) -> None:
    store = open_store(s3_store_url)
    assert isinstance(store, S3Store)
    css = b".a { b: c; }\n"
    store.put(PATH, css)
    gone = store.presign_get("artifacts/gone.css", 60)  # a URL of another object: not used
    info = {"css": PATH, "map": None, "sha256": hashlib.sha256(css).hexdigest(), "css_url": gone}
    client = Client(Settings(store_url=s3_store_url))
    [written] = client.download({"outputs": {"main.scss": info}}, tmp_path / "out")
    assert written.css.read_bytes() == css
    store.delete(PATH)  # the object vanished: the URL answers 404, the store says missing
    info["css_url"] = store.presign_get(PATH, 60)
    with pytest.raises(ArtifactMissing):
        client.download({"outputs": {"main.scss": info}}, tmp_path / "out2")


def test_sentry_never_gets_a_presigned_urls_signature() -> None:
    """sentry-sdk's stdlib integration records an HTTP request's query string in its
    breadcrumb and span: the query of a presigned URL is its signature (and a temporary
    credential's session token)."""
    from compiler_tasks.observability import scrub_breadcrumb, scrub_event

    query = "X-Amz-Credential=AKIA&X-Amz-Security-Token=tok&X-Amz-Signature=sig"
    crumb = {"type": "http", "data": {"url": "http://s3/b/k", "http.query": query}}
    event = {
        "breadcrumbs": {"values": [crumb]},
        "spans": [{"op": "http.client", "data": {"url": "http://s3/b/k", "http.query": query}}],
    }
    assert "sig" not in str(scrub_event(event, {}))
    assert "sig" not in str(scrub_breadcrumb(dict(crumb, data=dict(crumb["data"])), {}))
