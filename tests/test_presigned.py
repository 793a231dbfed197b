"""Hits read S3 artifacts through presigned URLs, never anything but the store's object."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cli.client import Client
from cli.outputs import Artifacts
from compiler_tasks.errors import ArtifactMissing
from compiler_tasks.settings import Settings
from compiler_tasks.store import open_store, presigned
from compiler_tasks.store.s3 import S3Store
from tests.support.sentry_sink import SentrySink

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


_FETCH_TRACED = """
import sys
import sentry_sdk
from compiler_tasks.observability import sentry
from compiler_tasks.store import presigned
from compiler_tasks.settings import Settings

dsn, url, store_url, path = sys.stdin.read().split()
settings = Settings.from_env({"SCSSQ_TRACES_SAMPLE_RATE": "1"})
assert sentry.init_sentry("client", settings, {"SENTRY_DSN": dsn})
with sentry_sdk.start_span(name="scssq submit", attributes={"sentry.op": "scssq.submit"}):
    assert presigned.fetch(url, store_url, path, limit=1 << 20) is not None
    sentry_sdk.capture_message("after the download")  # its breadcrumbs hold the request
sentry_sdk.flush(5)
"""


def test_sentry_never_gets_a_presigned_urls_signature(s3_store_url: str) -> None:
    """The query of a presigned URL is its signature (and a temporary credential's
    session token): the real sentry-sdk, tracing a real download, never sends it."""
    store = open_store(s3_store_url)
    assert isinstance(store, S3Store)
    store.put(PATH, b".a { b: c; }\n")
    url = store.presign_get(PATH, 60)
    query = parse_qs(urlsplit(url).query)
    secrets = [v for values in query.values() for v in values if len(v) >= 8]
    assert secrets, url  # a signature, an access key id, ...
    with SentrySink() as sink:
        proc = subprocess.run(
            [sys.executable, "-c", _FETCH_TRACED],
            input=f"{sink.dsn} {url} {s3_store_url} {PATH}",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        sink.wait_for(
            "the download's span",
            lambda: [s for s in sink.spans() if s["op"] == "http.client" and "GET" in s["name"]],
        )
        assert sink.wait_for("the event", sink.errors)
        for secret in secrets:
            raw = sink.raw()
            at = raw.find(secret.encode())
            assert at < 0, (secret, raw[max(0, at - 300) : at + 100])
