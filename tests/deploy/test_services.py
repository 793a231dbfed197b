"""Deployed behaviour that runs here: the bucket init script against a real S3 API,
and Flower's basic auth as configured, against a real Flower process."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import (
    BIN,
    ROOT,
    compose_config,
    env_example,
)
from tests.support.procs import free_port, stop_group, wait_for


@pytest.mark.integration
def test_bucket_init_creates_once_then_finds_it(s3_endpoint: str) -> None:
    script = ROOT / "deploy" / "compose" / "create_bucket.py"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SCSSQ_"))},
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SCSSQ_STORE": f"s3://init-{os.getpid()}-{free_port()}/artifacts",
    }
    first = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and "created" in first.stdout, first.stderr
    again = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "exists" in again.stdout, again.stderr
    env["SCSSQ_STORE"] = "file:///tmp/store"
    bad = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "not an s3://" in bad.stderr


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0  # not listening (yet)


@pytest.mark.integration
def test_flower_as_deployed_requires_basic_auth_except_health_and_metrics(
    redis_server: Any, tmp_path: Path
) -> None:
    """Compose's Flower command on a real Flower: the UI needs the credentials, while
    /healthcheck (the healthcheck) and /metrics answer without (why it stays private)."""
    flower = compose_config()["services"]["flower"]
    entrypoint = flower["entrypoint"]
    assert entrypoint[:3] == ["/usr/bin/tini", "--", "celery"]
    port = free_port()
    args = [a if not a.startswith("--port=") else f"--port={port}" for a in flower["command"]]
    credentials = env_example()["FLOWER_BASIC_AUTH"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SCSSQ_", "FLOWER_"))},
        "SCSSQ_REDIS_URL": redis_server.url,
        "SCSSQ_PREFIX": f"flower{port}",
        "SCSSQ_QUEUE": f"flower{port}",
    }
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "celery"), *entrypoint[3:], "--address=127.0.0.1", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(base + "/healthcheck") == 200, 30, "flower to answer")
        assert _get(base + "/") == 401
        assert _get(base + "/", "admin:wrong") == 401
        assert _get(base + "/", credentials) == 200
        assert _get(base + "/metrics") == 200  # unauthenticated: keep the port private
    finally:
        stop_group(proc, grace=5)
        log.close()
