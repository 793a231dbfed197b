"""Security configuration on real processes: TLS, passwords, redaction, JSON-only messages.

* ``rediss://`` with a password works for the broker, locks and pub/sub, with
  the server's certificate verified (a client certificate too, mutual TLS);
  without the CA the fleet refuses to talk rather than talk unverified.
* A password in ``SCSSQ_REDIS_URL`` never appears in worker logs, client
  output or ``scssq health``, also when Redis is unreachable or refuses it.
* A pickle message on the queue is refused (ContentDisallowed) and runs
  nothing; the same request as JSON compiles.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kombu
import pytest
import redis

from compiler_tasks.coordination.connections import broker_ssl
from compiler_tasks.errors import ConfigError
from compiler_tasks.settings import Settings
from tests.hostile import forge
from tests.support.fleet import Fleet
from tests.support.procs import free_port, stop_group, wait_for
from tests.test_fleet import HASH1, make_src, submit_args

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + secrets.token_hex(12)


@dataclass
class Tls:
    """A TLS-only redis-server requiring a password and a client certificate."""

    port: int
    ca: Path
    cert: Path
    key: Path

    def url(self, password: str = PASSWORD) -> str:
        return f"rediss://:{password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url(),
            ssl_ca_certs=str(self.ca),
            ssl_certfile=str(self.cert),
            ssl_keyfile=str(self.key),
        )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificate(name: str, cn: str, ext: str, cwd: Path) -> None:
    """``name.key``/``name.pem`` signed by ``ca``, with the extension line ``ext``."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd
    )
    (cwd / f"{name}.ext").write_text(ext + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    if shutil.which("openssl") is None or shutil.which("redis-server") is None:
        pytest.skip("needs the openssl CLI and redis-server")
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=scssq test CA", cwd=d)  # fmt: skip
    _certificate("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1", d)
    _certificate("client", "scssq-client", "extendedKeyUsage=clientAuth", d)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(d / "server.pem"), "--tls-key-file", str(d / "server.key"),
         "--tls-ca-cert-file", str(d / "ca.pem"), "--tls-auth-clients", "yes",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(d),
         "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    tls = Tls(port, d / "ca.pem", d / "client.pem", d / "client.key")

    def ready() -> bool:
        try:
            return bool(tls.client().ping())
        except redis.RedisError:
            return False

    wait_for(ready, 15, "TLS redis-server")
    yield tls
    stop_group(proc, grace=5)  # type: ignore[arg-type]


def _no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text, text[-2000:]


def test_rediss_with_password_end_to_end(tls_redis: Tls, tmp_path: Path) -> None:
    files = {"redis_ca_file": tls_redis.ca, "redis_cert_file": tls_redis.cert}
    fleet = Fleet(tls_redis.url(), tmp_path, **files, redis_key_file=tls_redis.key)
    fleet.redis.close()
    fleet.redis = tls_redis.client()
    try:
        fleet.start_worker(1)
        src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
        first = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o1"), cwd=tmp_path)
        assert first.returncode == 0 and first.stdout.startswith("compiled"), first.stderr
        again = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o2"), cwd=tmp_path)
        assert again.returncode == 0 and again.stdout.startswith("cached"), again.stderr
        health = fleet.scssq("health", cwd=tmp_path)
        assert health.returncode == 0, health.stdout
        assert f"rediss://:***@127.0.0.1:{tls_redis.port}/0" in health.stdout
        # Without the CA that signed the server's certificate, nothing talks to it.
        untrusted = fleet.scssq("health", cwd=tmp_path, env={"SCSSQ_REDIS_CA_FILE": ""})
        assert untrusted.returncode == 3 and "certificate verify failed" in untrusted.stdout
        _no_password(first.stdout, first.stderr, again.stderr, health.stdout, untrusted.stdout)
        fleet.stop_workers()
        _no_password(fleet.logs())
        assert "rediss://:**@" in fleet.full_logs()  # Celery's banner shows the URL, masked
    finally:
        fleet.stop()


@pytest.mark.parametrize("name", ["SCSSQ_REDIS_CA_FILE", "SCSSQ_REDIS_CERT_FILE"])
def test_tls_files_must_exist(name: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=f"{name}=.*nope.pem.* is not a readable file"):
        Settings.from_env({name: missing})


def test_broker_options_verify_the_certificate(tls_redis: Tls) -> None:
    env = {"SCSSQ_REDIS_URL": tls_redis.url(), "SCSSQ_REDIS_CERT_FILE": str(tls_redis.cert)}
    env["SCSSQ_REDIS_KEY_FILE"] = str(tls_redis.key)
    unverified = Settings.from_env(env)  # no SCSSQ_REDIS_CA_FILE: the system's CAs
    conn = kombu.Connection(unverified.broker_url, ssl=broker_ssl(unverified))
    with conn, pytest.raises(Exception, match="certificate verify failed"):
        conn.connect()
    verified = Settings.from_env({**env, "SCSSQ_REDIS_CA_FILE": str(tls_redis.ca)})
    with kombu.Connection(verified.broker_url, ssl=broker_ssl(verified)) as conn:
        conn.connect()
        assert conn.connected


def test_passwords_never_shown_on_connection_errors(tls_redis: Tls, tmp_path: Path) -> None:
    closed = f"redis://scssq-client:{PASSWORD}@127.0.0.1:{free_port()}/0"
    fleet = Fleet(closed, tmp_path)
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    outputs = []
    try:
        fleet.start_worker(1, wait=False)
        for args in (
            ["submit", HASH1, *submit_args(src, tmp_path / "o"), "--json", "--timeout", "5"],
            ["status", HASH1, "--project", "demo"],
            ["fetch", HASH1, "--project", "demo", "--out", str(tmp_path / "f")],
            ["health"],
        ):
            proc = fleet.scssq(*args, cwd=tmp_path)
            assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
            outputs += [proc.stdout, proc.stderr]
        assert "scssq-client:***@" in "".join(outputs)
        wrong = fleet.scssq(
            "health", cwd=tmp_path, env={"SCSSQ_REDIS_URL": tls_redis.url("wrong-" + PASSWORD),
                                         "SCSSQ_REDIS_CA_FILE": str(tls_redis.ca),
                                         "SCSSQ_REDIS_CERT_FILE": str(tls_redis.cert),
                                         "SCSSQ_REDIS_KEY_FILE": str(tls_redis.key)},
        )  # fmt: skip
        assert wrong.returncode == 3 and "FAIL redis" in wrong.stdout
        outputs += [wrong.stdout, wrong.stderr]
        wait_for(lambda: "Cannot connect" in fleet.full_logs(), 20, "the worker's connection error")
    finally:
        fleet.stop()
    _no_password(*outputs, fleet.logs())
    assert "scssq-client:**@" in fleet.full_logs()


class _Exploit:
    """Unpickling this creates a directory: proof that the worker ran the payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.makedirs, (str(self.marker),))


def test_pickle_messages_are_refused(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    marker = tmp_path / "pickle-ran"
    job = forge.request(fleet, files={"main.scss": b".a { b: c; }\n"})
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": "scssq.compile",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "attacker",
        "ignore_result": True,
    }
    body = ((_Exploit(marker),), {"request": job}, {"callbacks": None, "errbacks": None})
    with kombu.Connection(fleet.env["SCSSQ_REDIS_URL"]) as conn:
        conn.Producer().publish(
            body, exchange="", routing_key=fleet.prefix, serializer="pickle", headers=headers
        )
    wait_for(
        lambda: "ContentDisallowed" in fleet.full_logs(), 20, "the worker to refuse the message"
    )
    time.sleep(0.5)
    assert not marker.exists(), "the worker unpickled the message"
    assert fleet.engine_runs() == []
    assert fleet.redis.keys(f"{fleet.prefix}:result:*") == []
    assert fleet.redis.llen(fleet.prefix) == 0  # consumed and dropped, not redelivered
    # The same request as JSON compiles: the refusal was about the serializer.
    result = forge.send_and_wait(fleet, {**job, "submit": secrets.token_hex(8)})
    assert result["status"] == "ok", json.dumps(result)[:500]
    assert len(fleet.engine_runs()) == 1
