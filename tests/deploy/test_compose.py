"""The compose files, offline: the Compose specification, dependencies, the ACL and
environment wiring, and every variable the code reads set or defaulted."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from compiler_tasks.coordination.acl import WORKER_USER
from compiler_tasks.settings import Settings
from tests.support.deploy import (
    ACL_FILES,
    ACL_RENDER,
    CODE_DIRS,
    COMPOSE,
    COMPOSE_DEV,
    ENV_EXAMPLE,
    FLOWER_USER,
    K8S,
    compose_config,
    compose_vars,
    container,
    container_env,
    env_example,
    k8s_objects,
    load_yaml,
    longest_task,
    run,
    tool,
)


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_DEV], ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec_offline(path: Path) -> None:
    proc = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_spec_check_catches_a_misspelled_key(tmp_path: Path) -> None:
    """The check has teeth: the schema forbids unknown service keys."""
    config = load_yaml(COMPOSE)
    config["services"]["worker"]["stop_grace_periode"] = "300s"
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(config))
    proc = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert proc.returncode == 1, proc.stdout
    assert "stop_grace_periode" in proc.stdout + proc.stderr


@pytest.mark.parametrize("dev", [False, True], ids=["fleet", "dev"])
def test_compose_depends_on_targets_exist_and_conditions_hold(dev: bool) -> None:
    services = compose_config(dev)["services"]
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must run once"
            else:
                pytest.fail(f"{name} -> {target}: say what to wait for, not {condition}")
    for name in ("redis", "s3", "worker", "flower"):
        assert "healthcheck" in services[name], name


def test_workers_scale_and_stop_warmly() -> None:
    config = compose_config()
    worker = config["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale needs neither"
    env = {k: str(v) for k, v in worker["environment"].items()}
    grace = int(worker["stop_grace_period"].rstrip("s"))
    assert grace > longest_task(env)
    assert worker["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "compiler_tasks.worker.probe",
        "ready",
    ]


def test_compose_redis_loads_acl_users_noeviction_and_persistence() -> None:
    """Redis loads the file redis-acl renders (no --requirepass: Redis ignores it once it
    loads an ACL file), and every process logs in as its own user."""
    services = compose_config()["services"]
    redis_service, step = services["redis"], services["redis-acl"]
    command = redis_service["command"]
    assert "--requirepass" not in command
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"
    aclfile = Path(command[command.index("--aclfile") + 1])
    # the step writes the file into the volume Redis mounts, and runs first
    source, output = step["command"]
    volume = next(v for v in step["volumes"] if v.endswith(":" + str(Path(output).parent)))
    name = volume.split(":")[0]
    assert (
        f"{name}:{aclfile.parent}:ro" in redis_service["volumes"]
        and name in compose_config()["volumes"]
    )
    assert Path(output).name == aclfile.name
    assert redis_service["depends_on"]["redis-acl"]["condition"] == "service_completed_successfully"
    assert step["restart"] == "no" and step["network_mode"] == "none" and step["read_only"]
    assert step["entrypoint"] == ["sh", f"{source}/{ACL_RENDER.name}"]
    for path in (*ACL_FILES, ACL_RENDER):
        assert f"./deploy/{path.name}:{source}/{path.name}:ro" in step["volumes"]
    # each process's URL names an ACL user whose password the step hashes
    env = env_example()
    expected = {"worker": WORKER_USER, "s3-init": WORKER_USER, "flower": FLOWER_USER}
    variables = {WORKER_USER: "REDIS_WORKER_PASSWORD", FLOWER_USER: "REDIS_FLOWER_PASSWORD"}
    for service, user in expected.items():
        url = urlsplit(services[service]["environment"]["SCSSQ_REDIS_URL"])
        assert (url.username, url.hostname) == (user, "redis"), service
        assert url.password == env[variables[user]], service
        assert step["environment"][variables[user]] == env[variables[user]]
    assert step["environment"]["REDIS_PASSWORD"] == env["REDIS_PASSWORD"]
    assert step["environment"]["REDIS_CLIENT_PASSWORD"] == env["REDIS_CLIENT_PASSWORD"]
    assert redis_service["environment"]["REDISCLI_AUTH"] == env["REDIS_PASSWORD"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_env_is_valid_settings_for_every_scssq_service() -> None:
    """With .env.example as .env, each scssq process's settings load (cross-field rules too)."""
    services = compose_config()["services"]
    for name in ("worker", "flower", "s3-init"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = Settings.from_env(env)
        assert settings.queue == env_example()["SCSSQ_QUEUE"]
        assert settings.store_url.startswith("s3://")
    assert "AWS_SECRET_ACCESS_KEY" not in services["flower"]["environment"], "least privilege"


def test_env_example_defines_exactly_what_compose_interpolates() -> None:
    used: dict[str, str | None] = {}
    for path in (COMPOSE, COMPOSE_DEV):
        used.update(compose_vars(path))
    defined = env_example()
    missing = sorted(n for n, op in used.items() if op != ":-" and n not in defined)
    assert not missing, f"required by compose, absent from .env.example: {missing}"
    unused = sorted(set(defined) - set(used))
    assert not unused, f".env.example sets variables no compose file reads: {unused}"
    secrets = ["REDIS_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "FLOWER_BASIC_AUTH"]
    secrets += ["REDIS_WORKER_PASSWORD", "REDIS_CLIENT_PASSWORD", "REDIS_FLOWER_PASSWORD"]
    for name in secrets:
        assert used[name] == ":?", f"{name} must have no default (compose refuses without it)"
        assert "change-me" in defined[name], f"{name} in .env.example must be a placeholder"


def _code_env_reads(files: list[Path] | None = None) -> tuple[set[str], set[str]]:
    """(every SCSSQ_* name the code mentions, those read without a default).

    A read without a default is a subscript, ``os.environ["SCSSQ_X"]`` or
    ``env[NAME]`` with a module constant; everything else (``env_str(env, NAME,
    DEFAULT)``, ``.get``, click's ``envvar=``) has a default or is optional."""
    mentioned: set[str] = set()
    required: set[str] = set()
    if files is None:
        files = [p for d in CODE_DIRS for p in ([d] if d.is_file() else sorted(d.rglob("*.py")))]
    for path in files:
        text = path.read_text()
        mentioned.update(re.findall(r"SCSSQ_[A-Z_]+", text))
        tree = ast.parse(text)
        constants = {
            t.id: node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for t in node.targets
            if isinstance(t, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                key = node.slice
                value = (
                    key.value
                    if isinstance(key, ast.Constant)
                    else constants.get(key.id)
                    if isinstance(key, ast.Name)
                    else None
                )
                if isinstance(value, str) and value.startswith("SCSSQ_"):
                    required.add(value)
    return {m.rstrip("_") for m in mentioned}, required


def test_every_variable_the_code_reads_is_set_or_defaulted() -> None:
    mentioned, required = _code_env_reads()
    assert "SCSSQ_REDIS_URL" in mentioned and "SCSSQ_QUEUE" in mentioned  # the scan works
    Settings.from_env({})  # every setting has a usable default
    compose_env = compose_config()["services"]["worker"]["environment"]
    k8s_env = container_env(container(k8s_objects(), "scssq-worker"))
    for name in required:
        assert name in compose_env, f"the code needs {name} (no default): set it in compose"
        assert name in k8s_env, f"the code needs {name} (no default): set it in the ConfigMap"


def test_the_scan_finds_reads_without_a_default(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nNAME = 'SCSSQ_B'\n"
        "a = os.environ['SCSSQ_A']\nb = os.environ[NAME]\n"
        "c = os.environ.get('SCSSQ_C', '1')\nos.environ['SCSSQ_D'] = 'x'\n"
    )
    mentioned, required = _code_env_reads([sample])
    assert mentioned == {"SCSSQ_A", "SCSSQ_B", "SCSSQ_C", "SCSSQ_D"}
    assert required == {"SCSSQ_A", "SCSSQ_B"}


def test_every_scssq_variable_the_files_set_is_one_the_code_reads() -> None:
    """A misspelt variable in a deploy file would be ignored silently: refuse it."""
    mentioned, _ = _code_env_reads()
    set_by_files: dict[str, set[str]] = {}
    for path in (COMPOSE, COMPOSE_DEV, ENV_EXAMPLE, *sorted(K8S.glob("*.yaml"))):
        for name in re.findall(r"\b(SCSSQ_[A-Z_]+)\s*[:=]", path.read_text()):
            set_by_files.setdefault(name, set()).add(path.name)
    unknown = {n: sorted(f) for n, f in set_by_files.items() if n not in mentioned}
    assert not unknown, f"variables the code never reads: {unknown}"
