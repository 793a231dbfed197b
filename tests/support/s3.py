"""A real S3 API for tests: moto's standalone server in its own process on loopback.

``moto_server()`` starts ``python -m moto.server`` on a free port, waits until it
answers HTTP and yields its endpoint URL; the process (and its process group) is
killed when the context exits. The pytest fixtures:

* ``s3_endpoint`` (session): one server for the whole session; sets no variable.
* ``s3_store_url`` (function): points the standard AWS variables at that server
  (via ``monkeypatch``, so they are undone after the test), creates a fresh bucket
  and returns ``s3://<bucket>/some-prefix``.

Load with ``pytest_plugins = ["tests.support.s3"]`` or ``-p tests.support.s3``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

STARTUP_TIMEOUT = 30.0
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: Variables that would override or disturb the test configuration if a developer set them.
_AWS_NOISE = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_CA_BUNDLE",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextlib.contextmanager
def moto_server(attempts: int = 3, log_path: str | None = None) -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yield ``http://127.0.0.1:PORT``.

    ``log_path``: the server's output (one line per HTTP request) goes to that file,
    which the caller may read while the server runs; else to a temporary file.
    """
    opened = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    with opened as log:
        for _ in range(attempts):
            port = free_port()
            endpoint = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # own process group: killed as a whole
            )
            try:
                deadline = time.monotonic() + STARTUP_TIMEOUT
                while proc.poll() is None and time.monotonic() < deadline:
                    if _answers(endpoint):
                        break
                    time.sleep(0.05)
                else:
                    # Died (e.g. the port was taken meanwhile) or never answered: try again.
                    continue
                yield endpoint
                return
            finally:
                _stop(proc)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")[-4000:]
        raise RuntimeError(f"moto server did not start after {attempts} attempts:\n{output}")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of a moto S3 server that lives for the whole test session."""
    with moto_server() as endpoint:
        yield endpoint


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point the standard AWS variables at ``endpoint`` with the test credentials."""
    for name in _AWS_NOISE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_store_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/some-prefix`` with the AWS variables set for this test."""
    import boto3

    aws_env(monkeypatch, s3_endpoint)
    bucket = f"scssq-test-{uuid.uuid4().hex[:16]}"
    boto3.session.Session().client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/some-prefix"
