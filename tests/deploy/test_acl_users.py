"""The Redis ACL users as compose and Kubernetes render them, on a real redis-server:
each URL logs in, KEDA's own script counts the queue and nothing else, and a real
Flower shows a real worker's compile as its own user."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import redis

from compiler_tasks.coordination.acl import CLIENT_USER, WORKER_USER, users
from compiler_tasks.settings import Settings
from tests.support.deploy import (
    FLOWER_USER,
    KEDA_LIST_LENGTH_SCRIPT,
    KEDA_USER,
    acl_redis,
    acl_users,
    as_url,
    compose_config,
    container,
    container_env,
    env_example,
    k8s_objects,
    refused,
    render_acl,
    secret_template,
)
from tests.support.fleet import Fleet
from tests.support.procs import wait_for


@pytest.mark.integration
def test_compose_acl_step_renders_users_redis_loads(tmp_path: Path) -> None:
    services = compose_config()["services"]
    rendered = render_acl(tmp_path, dict(services["redis-acl"]["environment"]))
    assert set(users(rendered.read_text())) == set(acl_users())
    with acl_redis(rendered, tmp_path) as server:
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()  # --requirepass is gone, and so is the open default user
        admin = redis.Redis(
            host="127.0.0.1",
            port=server.port,
            password=services["redis"]["environment"]["REDISCLI_AUTH"],
        )
        assert admin.ping() and admin.config_get("maxmemory-policy")  # the healthcheck's user
        env = services["worker"]["environment"]
        worker = as_url(server, env["SCSSQ_REDIS_URL"])
        prefix = env["SCSSQ_PREFIX"]
        assert worker.set(f"{prefix}:result:x", "1") and worker.lpush(env["SCSSQ_QUEUE"], "m")
        flower = as_url(server, services["flower"]["environment"]["SCSSQ_REDIS_URL"])
        assert flower.llen(env["SCSSQ_QUEUE"]) == 1
        assert refused(lambda: flower.set(f"{prefix}:result:x", "forged"))
        assert refused(lambda: flower.publish(f"{prefix}:done:x", "forged"))
        client_pw = env_example()["REDIS_CLIENT_PASSWORD"]
        client = redis.Redis(
            host="127.0.0.1", port=server.port, username=CLIENT_USER, password=client_pw
        )
        assert client.get(f"{prefix}:result:x") == b"1"
        assert refused(lambda: client.set(f"{prefix}:result:x", "forged"))
        with pytest.raises(redis.AuthenticationError):  # compose runs no KEDA: no password
            redis.Redis(host="127.0.0.1", port=server.port, username=KEDA_USER, password="").ping()


@pytest.mark.integration
def test_kubernetes_acl_init_renders_users_and_keda_counts_only(tmp_path: Path) -> None:
    """The init container's environment (distinct secrets), the Redis it feeds, and
    KEDA's own Lua script as scssq-keda with the TriggerAuthentication's parameters."""
    objects = k8s_objects()
    secrets = {
        k: (v if k.endswith("-username") else f"{k}-{os.urandom(6).hex()}")
        for k, v in secret_template().items()
    }
    (step,) = objects[("StatefulSet", "scssq-redis")]["spec"]["template"]["spec"]["initContainers"]
    rendered = render_acl(tmp_path, container_env(step, secrets))
    with acl_redis(rendered, tmp_path) as server:
        worker_env = container_env(container(objects, "scssq-worker"), secrets)
        settings = Settings.from_env(worker_env)
        worker = as_url(server, worker_env["SCSSQ_REDIS_URL"])
        assert worker.lpush(settings.queue, "a", "b", "c") == 3
        flower_env = container_env(container(objects, "scssq-flower"), secrets)
        assert as_url(server, flower_env["SCSSQ_REDIS_URL"]).llen(settings.queue) == 3
        # KEDA: parameters from the TriggerAuthentication, list from the trigger
        scaled = objects[("ScaledObject", "scssq-worker")]["spec"]
        (trigger,) = scaled["triggers"]
        auth = objects[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
        params = {r["parameter"]: secrets[r["key"]] for r in auth["secretTargetRef"]}
        keda = redis.Redis(
            host="127.0.0.1",
            port=server.port,
            db=int(trigger["metadata"]["databaseIndex"]),
            username=params["username"],
            password=params["password"],
        )
        list_name = trigger["metadata"]["listName"]
        assert keda.ping()
        assert keda.eval(KEDA_LIST_LENGTH_SCRIPT, 1, list_name) == 3
        assert keda.llen(list_name) == 3
        assert refused(lambda: keda.set(list_name, "x"))
        assert refused(lambda: keda.lpop(list_name))
        assert refused(lambda: keda.llen(f"{settings.prefix}:result:x"))
        assert refused(lambda: keda.get(f"{settings.prefix}:engines"))
        assert refused(lambda: keda.eval("return redis.call('del', KEYS[1])", 1, list_name))
        assert refused(lambda: keda.eval("return redis.call('lpop', KEYS[1])", 1, list_name))
        assert refused(lambda: keda.config_get("*"))
        assert refused(lambda: keda.keys("*"))
        assert worker.llen(settings.queue) == 3, "nothing KEDA tried changed the queue"
        client = redis.Redis(
            host="127.0.0.1",
            port=server.port,
            username=CLIENT_USER,
            password=secrets["redis-client-password"],
        )
        assert client.ping()


@pytest.mark.integration
def test_flower_works_as_its_own_acl_user(tmp_path: Path) -> None:
    """A real worker (scssq-worker) compiles a real submit (scssq-client), and a real
    Flower logged in as scssq-flower lists the worker (remote control), shows the
    compile (events) and the queue, while Redis denies it nothing."""
    from tests.test_flower import Flower  # a real Flower process, basic auth

    passwords = {
        "REDIS_PASSWORD": "admin-" + os.urandom(6).hex(),
        "REDIS_WORKER_PASSWORD": "worker-" + os.urandom(6).hex(),
        "REDIS_CLIENT_PASSWORD": "client-" + os.urandom(6).hex(),
        "REDIS_FLOWER_PASSWORD": "flower-" + os.urandom(6).hex(),
    }
    probe = Fleet("redis://unused", tmp_path)  # only for its fresh prefix
    prefix = probe.prefix
    probe.redis.close()
    rendered = render_acl(tmp_path, {**passwords, "SCSSQ_PREFIX": prefix, "SCSSQ_QUEUE": prefix})
    with acl_redis(rendered, tmp_path) as server:
        base = f"127.0.0.1:{server.port}/0"
        fleet = Fleet(
            f"redis://{CLIENT_USER}:{passwords['REDIS_CLIENT_PASSWORD']}@{base}", tmp_path
        )
        fleet.prefix = prefix
        fleet.env.update(SCSSQ_PREFIX=prefix, SCSSQ_QUEUE=prefix)
        fleet.redis.close()
        admin = redis.Redis(
            host="127.0.0.1", port=server.port, password=passwords["REDIS_PASSWORD"]
        )
        fleet.redis = admin
        flower = None
        try:
            worker_url = f"redis://{WORKER_USER}:{passwords['REDIS_WORKER_PASSWORD']}@{base}"
            fleet.start_worker(1, extra_env={"SCSSQ_REDIS_URL": worker_url})
            flower_url = f"redis://{FLOWER_USER}:{passwords['REDIS_FLOWER_PASSWORD']}@{base}"
            flower = Flower(
                types.SimpleNamespace(
                    tmp=tmp_path, env={**fleet.env, "SCSSQ_REDIS_URL": flower_url}
                )
            )
            src = tmp_path / "src"
            src.mkdir()
            (src / "main.scss").write_text(".a { color: red; }\n")
            proc = fleet.scssq(
                "submit", "a" * 40, "--src", str(src), "--entry", "main.scss",
                "--out", str(tmp_path / "out"), "--project", "demo", cwd=tmp_path,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr + fleet.logs()
            workers = flower.json("/api/workers?refresh=1")
            (name,) = [n for n in workers if n.startswith(f"w1-{prefix}@")]
            assert "scssq.compile" in str(workers[name].get("registered"))

            def compiled() -> bool:
                tasks = flower.json("/api/tasks?taskname=scssq.compile").values()
                return any(t.get("state") == "SUCCESS" for t in tasks)

            wait_for(compiled, 20, "the compile in Flower's task list (events)")
            queues = flower.json("/api/queues/length")["active_queues"]
            assert {"name": prefix, "messages": 0} in queues
            denied = [e for e in admin.acl_log(count=100) if e.get("username") == FLOWER_USER]
            assert not denied, denied
            log = flower.log.read_text(errors="replace")
            assert "no permissions" not in log and "NOPERM" not in log, log[-3000:]
            assert "no permissions" not in fleet.logs()
        finally:
            if flower is not None:
                flower.stop()
            fleet.stop()
