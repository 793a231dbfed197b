"""The deployment files, validated offline: compose, Dockerfiles, Kubernetes, KEDA.

No Docker engine and no cluster: every check here runs on the files themselves.

* Schemas: the compose files against the Compose specification (check-jsonschema's
  vendored copy), the manifests with ``kubernetes-validate --strict`` (schemas shipped
  in the package), the KEDA objects against JSON schemas derived from KEDA's CRDs
  (vendored in deploy/schemas/keda, see generate.py there), the Dockerfiles with
  hadolint (a binary inside its wheel).
  Each tool is run from this interpreter's venv with an unusable HTTP proxy in its
  environment, so a tool that tried the network would fail here, not only in CI.
* What schemas miss: the production entrypoint is the worker command the integration
  tests run (``tests.support.fleet.WORKER_ARGS``), every ``depends_on`` target exists,
  every environment variable the code needs is set or defaulted and every one the
  files set is one the code reads, the KEDA trigger watches the queue the workers
  consume, grace periods exceed the longest task, and no secret is in a file.
* Behaviour that runs here: the bucket init script against a real S3 API (moto),
  Flower's basic auth as configured, against a real Flower process, and the Redis ACL
  users as compose and Kubernetes render them, on a real redis-server: each process's
  URL logs in, KEDA's own Lua script counts the queue as scssq-keda (and nothing else
  runs), and a real Flower shows a real worker's compile as scssq-flower.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from compiler_tasks.coordination.acl import CLIENT_USER, WORKER_USER, users
from compiler_tasks.settings import Settings
from tests.support.fleet import WORKER_ARGS, Fleet
from tests.support.procs import free_port, stop_group, wait_for
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_DEV = ROOT / "docker-compose.dev.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERFILE_DEV = ROOT / "deploy" / "Dockerfile.dev"
K8S = ROOT / "deploy" / "k8s"
#: Manifests of built-in kinds (kubernetes-validate has their schemas).
CORE_MANIFESTS = ["namespace.yaml", "configmap.yaml", "redis.yaml", "worker.yaml", "flower.yaml"]
SECRET_TEMPLATE = "secret.example.yaml"
KEDA_MANIFEST = "keda.yaml"
#: JSON schemas of KEDA's kinds, vendored (see generate.py there).
KEDA_SCHEMAS = ROOT / "deploy" / "schemas" / "keda"
#: The Redis ACL users: scssq's (compiler_tasks.coordination.acl) and the operators'
#: (admin, Flower, KEDA).
ACL_FILES = [ROOT / "deploy" / "redis-acl.conf", ROOT / "deploy" / "redis-acl-ops.conf"]
ACL_RENDER = ROOT / "deploy" / "redis-acl-render.sh"
FLOWER_USER, KEDA_USER = "scssq-flower", "scssq-keda"
#: The Lua script KEDA's redis list scaler sends with EVAL (KEDA v2.12-v2.17,
#: pkg/scalers/redis_scaler.go): TYPE, then the matching length command.
KEDA_LIST_LENGTH_SCRIPT = """
local listName = KEYS[1]
local listType = redis.call('type', listName).ok
local cmd = {
    zset = 'zcard',
    set = 'scard',
    list = 'llen',
    hash = 'hlen',
    none = 'llen'
}

return redis.call(cmd[listType], listName)
"""
#: Oldest Kubernetes the manifests support, and the newest whose schemas we ship.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
#: Where the code reads its configuration.
CODE_DIRS = [ROOT / "compiler_tasks", ROOT / "cli", ROOT / "celeryconfig.py"]
#: Metadata keys KEDA's redis (list) scaler understands.
KEDA_REDIS_KEYS = {
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "username",
    "usernameFromEnv",
    "passwordFromEnv",
    "databaseIndex",
    "enableTLS",
    "unsafeSsl",
    "listName",
    "listLength",
    "activationListLength",
}
#: The Celery pool size flag: a fixed one, never --autoscale (see docs/deploy.md).
CONCURRENCY = re.compile(r"^--concurrency=(\d+)$")


# ---------------------------------------------------------------------------
# helpers


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing from {BIN}: pip install -e '.[dev]'")
    return str(path)


def offline_env() -> dict[str, str]:
    """The environment with an unusable proxy: any network access fails fast."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    dead = "http://127.0.0.1:9"
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead)
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", offline_env())
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, with ``values`` as .env."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = values.get(name)
        if op in (":-", "-"):
            return value if value else (arg or "")
        if op in (":?", "?") and not value:
            raise KeyError(f"{name} is required: {arg}")
        return value or ""

    return _INTERPOLATION.sub(sub, text)


def strings(node: Any) -> list[str]:
    """Every string value (not key, not comment) of a parsed YAML document."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def interpolate_tree(node: Any, values: dict[str, str]) -> Any:
    """Interpolate like compose: in values after parsing, never in comments."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, values) for value in node]
    return interpolate(node, values) if isinstance(node, str) else node


def compose_vars(path: Path) -> dict[str, str | None]:
    """Variables a compose file interpolates: name -> its operator (None, ':-', ':?')."""
    found: dict[str, str | None] = {}
    for text in strings(load_yaml(path)):
        for m in _INTERPOLATION.finditer(text):
            if m.group(1):
                found[m.group(1)] = m.group(2)
    return found


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, enough for these files: mappings merge,
    ``command``/``entrypoint`` and other sequences are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return override


def compose_config(dev: bool = False) -> dict[str, Any]:
    """The compose model as compose would see it with .env.example as .env."""
    values = env_example()
    config = interpolate_tree(load_yaml(COMPOSE), values)
    if dev:
        config = merge(config, interpolate_tree(load_yaml(COMPOSE_DEV), values))
    return config


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def container(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    containers = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def acl_users() -> dict[str, list[str]]:
    """Every ACL user of the deploy files, name -> rules (as written: default names)."""
    found: dict[str, list[str]] = {}
    for path in ACL_FILES:
        these = users(path.read_text())
        assert not set(these) & set(found), f"{path.name} redefines a user"
        found.update(these)
    return found


def keda_schema(kind: str) -> Path:
    return KEDA_SCHEMAS / f"{kind.lower()}-keda.sh-v1alpha1.json"


def configmap() -> dict[str, str]:
    return dict(k8s_objects()[("ConfigMap", "scssq-config")]["data"])


def secret_template() -> dict[str, str]:
    return dict(k8s_objects()[("Secret", "scssq-secrets")]["stringData"])


def container_env(spec: dict[str, Any], secrets: dict[str, str] | None = None) -> dict[str, str]:
    """A container's environment as Kubernetes builds it, secrets from the template."""
    env = dict(configmap()) if spec.get("envFrom") else {}
    secrets = secret_template() if secrets is None else secrets
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], item["value"])
        else:
            key = item["valueFrom"]["secretKeyRef"]["key"]
            env[item["name"]] = secrets[key]
    return env


def longest_task(env: dict[str, str]) -> float:
    settings = Settings.from_env(env)
    return settings.compile_timeout + 2 * settings.lock_ttl


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile_instructions(path):
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, args))
    return result


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def worker_command(argv: list[str]) -> tuple[list[str], int]:
    """Split a full worker command into (celery + fixed args, concurrency)."""
    if argv[:2] == ["/usr/bin/tini", "--"]:
        argv = argv[2:]
    assert argv[0] == "celery", argv
    fixed = argv[: 1 + len(WORKER_ARGS)]
    rest = argv[1 + len(WORKER_ARGS) :]
    concurrency = [int(m.group(1)) for a in rest if (m := CONCURRENCY.match(a))]
    assert len(concurrency) == 1, f"one fixed --concurrency expected in {rest}"
    assert not any(a.startswith("--autoscale") for a in argv), argv
    assert "-n" in rest and "%h" in rest[rest.index("-n") + 1], "unique node name per worker"
    return fixed, concurrency[0]


# ---------------------------------------------------------------------------
# compose


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


# ---------------------------------------------------------------------------
# Dockerfiles


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_DEV], ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(path: Path, tmp_path: Path) -> None:
    env = {**offline_env(), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.startswith("HADOLINT_")}
    proc = run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(path)],
        env=env,
        cwd=tmp_path,  # no project or user .hadolint.yaml relaxes the rules
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_has_teeth(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y tini\n"
        "USER root\n"
        "CMD celery worker\n"
    )
    env = {**offline_env(), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    proc = run([tool("hadolint"), "--no-color", str(bad)], env=env, cwd=tmp_path)
    assert proc.returncode == 1
    for rule in ("DL3007", "DL3008", "DL3009", "DL3015", "DL3002", "DL3025"):
        assert rule in proc.stdout, proc.stdout


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_DEV], ids=lambda p: p.name)
def test_dockerfile_rules_that_matter(path: Path) -> None:
    """Pinned bases, non-root, exec form, tini, no remote ADD, apt lists cleaned."""
    all_stages = stages(path)
    for stage in all_stages:
        image = stage[0][1].split()[0]
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"unpinned {image}"
    final = all_stages[-1]
    users = [args for instruction, args in final if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    for instruction, args in final:
        if instruction in ("ENTRYPOINT", "CMD"):
            exec_form(args)  # JSON array: no shell between tini and celery
        if instruction == "ADD":
            assert "://" not in args, "no ADD of URLs"
        if instruction == "RUN" and "apt-get install" in args:
            assert "--no-install-recommends" in args
            assert "rm -rf /var/lib/apt/lists/*" in args, "apt lists cleaned in the same layer"
            assert not re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", args), "no compiler"
    entrypoint = [exec_form(a) for i, a in final if i == "ENTRYPOINT"][-1]
    assert entrypoint[:2] == ["/usr/bin/tini", "--"], "tini is PID 1"


def test_production_image_is_multi_stage_and_installs_wheels_only() -> None:
    builder, runtime = stages(DOCKERFILE)
    assert "AS builder" in builder[0][1] and "AS runtime" in runtime[0][1]
    assert "-slim-" in runtime[0][1].split()[0]
    assert any(i == "RUN" and "pip wheel" in a for i, a in builder)
    assert not any(i in ("COPY", "ADD") for i, _ in runtime), "the runtime copies no sources"
    installs = [a for i, a in runtime if i == "RUN" and "pip install" in a]
    assert len(installs) == 1 and "--no-index" in installs[0] and "from=builder" in installs[0]


def test_production_image_installs_the_worker_lock_with_hashes() -> None:
    """The image's dependencies are requirements/worker.lock's, every hash checked."""
    builder, runtime = stages(DOCKERFILE)
    copies = [a.split() for i, a in builder if i == "COPY"]
    assert ["requirements/worker.lock", "requirements/build.lock", "requirements/"] in copies
    runs = [a for i, a in builder if i == "RUN"]
    assert any(
        "pip wheel" in a and "--require-hashes -r requirements/worker.lock" in a for a in runs
    )
    # scssq's own wheel: built by the locked build backend, resolving no dependency itself
    assert any(
        "pip install" in a and "--require-hashes -r requirements/build.lock" in a for a in runs
    )
    assert any("pip wheel" in a and "--no-deps --no-build-isolation" in a for a in runs)
    (install,) = [a for i, a in runtime if i == "RUN" and "pip install" in a]
    assert "--require-hashes -r /wheels/worker.lock" in install
    assert "--no-deps" in install.split("&&")[1], "scssq itself adds no unlocked dependency"


def test_dev_image_copies_no_sources() -> None:
    assert not any(i in ("COPY", "ADD") for i, _ in dockerfile_instructions(DOCKERFILE_DEV))


def test_production_entrypoint_is_the_worker_command_the_tests_run() -> None:
    runtime = stages(DOCKERFILE)[-1]
    entrypoint = [exec_form(a) for i, a in runtime if i == "ENTRYPOINT"][-1]
    cmd = [exec_form(a) for i, a in runtime if i == "CMD"][-1]
    assert entrypoint == ["/usr/bin/tini", "--", "celery", *WORKER_ARGS]
    worker_command(entrypoint + cmd)
    # compose runs the image's entrypoint with its own pool size
    worker = compose_config()["services"]["worker"]
    assert "entrypoint" not in worker
    worker_command(entrypoint + worker["command"])
    # so does Kubernetes, spelled out
    spec = container(k8s_objects(), "scssq-worker")
    assert spec["command"] == entrypoint
    worker_command(spec["command"] + spec["args"])


def test_dev_workers_run_the_same_command_under_watchfiles() -> None:
    worker = compose_config(dev=True)["services"]["worker"]
    argv = worker["command"]
    assert argv[:3] == ["watchfiles", "--filter", "python"]
    fixed, _ = worker_command(shlex.split(argv[3]))
    assert fixed == ["celery", *WORKER_ARGS]
    assert "compiler_tasks" in argv[4:]


def test_dev_services_share_the_mount_venv_and_pip_cache() -> None:
    config = compose_config(dev=True)
    assert {"venv", "pip-cache"} <= set(config["volumes"])
    for name in ("deps", "s3-init", "worker", "flower"):
        service = config["services"][name]
        volumes = service["volumes"]
        assert ".:/app" in volumes, name
        assert "venv:/venv" in volumes and "pip-cache:/home/dev/.cache/pip" in volumes, name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile.dev", name
        if name != "deps":
            assert service["depends_on"]["deps"]["condition"] == "service_completed_successfully"
    deps = (ROOT / "deploy" / "dev" / "install-deps.sh").read_text()
    # the dev image's environment installs like `make setup`: the hashed lock, then the
    # project alone; a changed lock or pyproject.toml reinstalls
    assert "pip install --require-hashes -r requirements/dev.lock" in deps
    assert "pip install --no-deps --no-build-isolation -e ." in deps
    assert "cat requirements/dev.lock pyproject.toml | sha256sum" in deps


def test_dockerignore_lets_through_everything_the_package_needs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: nothing enters the build context by default"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {p.split(".")[0] for p in setuptools.get("packages", [])}
    needed |= {f"{m}.py" for m in setuptools.get("py-modules", [])}
    needed |= {"requirements/worker.lock", "requirements/build.lock"}  # what it installs from
    assert needed <= allowed, f"missing from the image's build context: {needed - allowed}"
    assert not allowed & {".env", ".git", "tests", ".venv"}


# ---------------------------------------------------------------------------
# Kubernetes


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_pass_kubernetes_validate_strict(version: str) -> None:
    paths = [str(K8S / name) for name in [*CORE_MANIFESTS, SECRET_TEMPLATE]]
    proc = run([tool("kubernetes-validate"), "--strict", "--kubernetes-version", version, *paths])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Couldn't find schema" not in output, output
    documents = sum(len(load_all(Path(p))) for p in paths)
    assert output.count(" passed for resource ") == documents, output


def test_kubernetes_validate_has_teeth(tmp_path: Path) -> None:
    docs = load_all(K8S / "worker.yaml")
    docs[0]["spec"]["template"]["spec"]["terminationGracePeriod"] = 300
    bad = tmp_path / "worker.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    proc = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSIONS[0], str(bad)])
    assert proc.returncode == 1 and "terminationGracePeriod" in proc.stdout + proc.stderr


def test_keda_objects_match_the_keda_crd_schemas(tmp_path: Path) -> None:
    """Against JSON schemas derived from KEDA's CRDs (deploy/schemas/keda/generate.py),
    strict: a misspelt field fails like a wrong type or a missing required one."""
    docs = load_all(K8S / KEDA_MANIFEST)
    assert {d["kind"] for d in docs} == {"ScaledObject", "TriggerAuthentication"}
    bad = json.loads(json.dumps(docs))
    for doc in bad:
        doc["spec"]["minReplicas"] = 1
    for name, variant in (("good", docs), ("bad", bad)):
        for doc in variant:
            assert doc["apiVersion"] == "keda.sh/v1alpha1"
            instance = tmp_path / f"{name}-{doc['kind']}.json"
            instance.write_text(json.dumps(doc))
            proc = run(
                [
                    tool("check-jsonschema"),
                    "--schemafile",
                    str(keda_schema(doc["kind"])),
                    str(instance),
                ]
            )
            output = proc.stdout + proc.stderr
            if name == "good":
                assert proc.returncode == 0, output
            else:
                assert proc.returncode == 1 and "minReplicas" in output, output


def test_keda_scales_the_worker_on_the_queue_the_workers_consume() -> None:
    objects = k8s_objects()
    scaled = objects[("ScaledObject", "scssq-worker")]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "scssq-worker"
    assert ("Deployment", scaled["scaleTargetRef"]["name"]) in objects
    worker_env = container_env(container(objects, "scssq-worker"))
    settings = Settings.from_env(worker_env)
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    assert set(meta) <= KEDA_REDIS_KEYS, f"unknown redis scaler keys: {set(meta) - KEDA_REDIS_KEYS}"
    assert meta["listName"] == settings.queue
    broker = urlsplit(settings.broker_url)
    assert meta["databaseIndex"] == (broker.path.lstrip("/") or "0")
    host, _, port = meta["address"].partition(":")
    namespace = objects[("ScaledObject", "scssq-worker")]["metadata"]["namespace"]
    assert host in (broker.hostname, f"{broker.hostname}.{namespace}.svc.cluster.local")
    assert int(port) == (broker.port or 6379)
    service = objects[("Service", str(broker.hostname))]
    assert service["spec"]["ports"][0]["port"] == int(port)
    assert int(meta["listLength"]) >= 1 and int(meta["activationListLength"]) >= 0
    # authentication: as scssq-keda, whose password the Redis pod's ACL step hashes
    auth = objects[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
    refs = {ref["parameter"]: ref for ref in auth["secretTargetRef"]}
    assert set(refs) == {"username", "password"}
    assert "username" not in meta and "password" not in meta, "one place for credentials"
    assert secret_template()[refs["username"]["key"]] == KEDA_USER
    (step,) = objects[("StatefulSet", "scssq-redis")]["spec"]["template"]["spec"]["initContainers"]
    keda_pw = next(e for e in step["env"] if e["name"] == "REDIS_KEDA_PASSWORD")
    assert keda_pw["valueFrom"]["secretKeyRef"] == {
        "name": refs["password"]["name"],
        "key": refs["password"]["key"],
    }
    assert {r["name"] for r in refs.values()} == {"scssq-secrets"}


def test_keda_numbers_respect_busy_pools_and_the_longest_task() -> None:
    objects = k8s_objects()
    scaled = objects[("ScaledObject", "scssq-worker")]["spec"]
    longest = longest_task(container_env(container(objects, "scssq-worker")))
    # KEDA's list length ignores reserved/running tasks and workers publish the engine
    # versions clients need: never scale to zero.
    assert scaled["minReplicaCount"] >= 1
    assert scaled["maxReplicaCount"] > scaled["minReplicaCount"]
    assert scaled["cooldownPeriod"] > longest
    down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] > longest


def test_worker_deployment_shuts_down_warmly_with_fixed_resources() -> None:
    objects = k8s_objects()
    deployment = objects[("Deployment", "scssq-worker")]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    pod = deployment["spec"]["template"]["spec"]
    spec = container(objects, "scssq-worker")
    env = container_env(spec)
    assert pod["terminationGracePeriodSeconds"] > longest_task(env)
    _, concurrency = worker_command(spec["command"] + spec["args"])
    for probe, kind in (("livenessProbe", "live"), ("readinessProbe", "ready")):
        assert spec[probe]["exec"]["command"] == [
            "python",
            "-m",
            "compiler_tasks.worker.probe",
            kind,
        ]
    resources = spec["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    limit_mib = int(resources["limits"]["memory"].removesuffix("Mi"))
    engine_mib = Settings.from_env(env).engine_memory_mb
    assert limit_mib >= concurrency * engine_mib + 256, "engines at their cap must fit the pod"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in spec["volumeMounts"]
    pdb = objects[("PodDisruptionBudget", "scssq-worker")]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.get("maxUnavailable") == 1


def test_redis_in_kubernetes_has_noeviction_persistence_and_acl_users() -> None:
    objects = k8s_objects()
    pod = objects[("StatefulSet", "scssq-redis")]["spec"]["template"]["spec"]
    (redis_spec,) = pod["containers"]
    (step,) = pod["initContainers"]
    args = redis_spec["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert "--requirepass" not in args, "ignored once Redis loads an ACL file"
    aclfile = Path(args[args.index("--aclfile") + 1])
    assert objects[("StatefulSet", "scssq-redis")]["spec"]["volumeClaimTemplates"]
    # the init container renders the ConfigMap's copies of the deploy files ...
    source = objects[("ConfigMap", "scssq-redis-acl")]["data"]
    for path in (*ACL_FILES, ACL_RENDER):
        assert source[path.name] == path.read_text(), f"copy {path.name} into redis.yaml"
    src_dir, output = step["args"]
    assert step["command"] == ["sh", f"{src_dir}/{ACL_RENDER.name}"]
    assert Path(output) == aclfile and step["image"] == container(objects, "scssq-worker")["image"]
    assert step["envFrom"] == [{"configMapRef": {"name": "scssq-config"}}], "prefix and queue"
    # ... into the memory volume Redis reads
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in step["volumeMounts"]}
    assert volumes[mounts[src_dir]]["configMap"]["name"] == "scssq-redis-acl"
    assert volumes[mounts[str(aclfile.parent)]]["emptyDir"]["medium"] == "Memory"
    assert {"name": mounts[str(aclfile.parent)], "mountPath": str(aclfile.parent),
            "readOnly": True} in redis_spec["volumeMounts"]  # fmt: skip
    for spec in (step, redis_spec):
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    # every Redis URL in the cluster names a user the step gives a password
    hashed = {e["name"] for e in step["env"]}
    variables = {WORKER_USER: "REDIS_WORKER_PASSWORD", FLOWER_USER: "REDIS_FLOWER_PASSWORD"}
    for name, user in (("scssq-worker", WORKER_USER), ("scssq-flower", FLOWER_USER)):
        value = next(e for e in container(objects, name)["env"] if e["name"] == "SCSSQ_REDIS_URL")
        url = urlsplit(value["value"])
        assert url.username == user and url.password == f"$({variables[user]})", name
        assert variables[user] in hashed and user in acl_users()
        ref = next(e for e in container(objects, name)["env"] if e["name"] == variables[user])
        step_ref = next(e for e in step["env"] if e["name"] == variables[user])
        assert ref["valueFrom"] == step_ref["valueFrom"], name
    assert {"REDIS_PASSWORD", "REDIS_KEDA_PASSWORD", "REDIS_CLIENT_PASSWORD"} <= hashed


def test_flower_has_basic_auth_and_no_public_exposure() -> None:
    objects = k8s_objects()
    spec = container(objects, "scssq-flower")
    assert spec["command"][-2:] == ["compiler_tasks.app", "flower"]
    assert "--basic-auth=$(FLOWER_BASIC_AUTH)" in spec["args"]
    assert objects[("Service", "scssq-flower")]["spec"]["type"] == "ClusterIP"
    assert not any(kind == "Ingress" for kind, _ in objects)
    compose_flower = compose_config()["services"]["flower"]
    assert f"--basic-auth={env_example()['FLOWER_BASIC_AUTH']}" in compose_flower["command"]


def test_no_secret_in_any_manifest() -> None:
    objects = k8s_objects()
    secrets = [key for key in objects if key[0] == "Secret"]
    assert secrets == [("Secret", "scssq-secrets")]
    for key, value in secret_template().items():
        if key.endswith("-username"):  # a name, not a secret (KEDA reads only Secrets)
            assert value in acl_users(), key
        else:
            assert value in ("CHANGE-ME", "") or value.endswith(":CHANGE-ME"), key
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert SECRET_TEMPLATE not in kustomization["resources"], "the template is never applied"
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|DSN|AUTH|ACCESS_KEY")
    assert not [k for k in configmap() if sensitive.search(k)], "secrets belong in the Secret"
    for (kind, name), doc in objects.items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        for spec in pod_containers(doc):
            for item in spec.get("env", []):
                if sensitive.search(item["name"]):
                    assert "valueFrom" in item, f"{name}: {item['name']} must come from a Secret"
                elif "value" in item and "://" in item["value"]:
                    password = urlsplit(item["value"]).password
                    assert password is None or re.fullmatch(r"\$\([A-Z_]+\)", password), name
            for key_ref in (
                e["valueFrom"]["secretKeyRef"] for e in spec.get("env", []) if "valueFrom" in e
            ):
                assert key_ref["key"] in secret_template(), (
                    f"{name}: template lacks {key_ref['key']}"
                )


def test_kustomization_applies_every_manifest_and_pins_images() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE}
    assert set(kustomization["resources"]) == manifests
    for (kind, name), doc in k8s_objects().items():
        if kind in ("Deployment", "StatefulSet"):
            for spec in pod_containers(doc):
                _, _, tag = spec["image"].rpartition(":")
                assert tag and tag != "latest" and "/" not in tag, f"{name}: pin {spec['image']}"


def test_configmap_and_secret_template_load_as_settings() -> None:
    settings = Settings.from_env(container_env(container(k8s_objects(), "scssq-worker")))
    assert settings.store_url.startswith("s3://")
    assert settings.redis_url.startswith("redis://scssq-worker:CHANGE-ME@scssq-redis:6379/")


#: Bytes a tmpfs allocates at least per non-empty file.
PAGE = 4096


def test_workers_unpack_bundles_into_memory_sized_into_the_pod() -> None:
    """SCSSQ_WORK_DIR is a tmpfs in both deployments, big enough for a pool's bundles, and
    its pages are counted in the pod's memory limit."""
    objects = k8s_objects()
    spec = container(objects, "scssq-worker")
    env = container_env(spec)
    settings = Settings.from_env(env)
    _, concurrency = worker_command(spec["command"] + spec["args"])
    mount = next(m for m in spec["volumeMounts"] if m["mountPath"] == env["SCSSQ_WORK_DIR"])
    pod = objects[("Deployment", "scssq-worker")]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])["emptyDir"]
    assert volume["medium"] == "Memory"
    size_mib = int(volume["sizeLimit"].removesuffix("Mi"))
    # tmpfs takes at least one page per file: a bundle at both limits needs this much.
    per_task = settings.max_bundle_bytes + settings.max_bundle_files * PAGE
    assert size_mib * 2**20 >= concurrency * per_task
    limit_mib = int(spec["resources"]["limits"]["memory"].removesuffix("Mi"))
    assert limit_mib >= concurrency * settings.engine_memory_mb + 512 + size_mib
    worker = compose_config()["services"]["worker"]
    scratch = worker["environment"]["SCSSQ_WORK_DIR"]
    [tmpfs] = [t for t in worker["tmpfs"] if t.split(":")[0] == scratch]
    size = re.search(r"size=(\d+)m", tmpfs)
    assert size and int(size.group(1)) * 2**20 >= 2 * per_task  # WORKER_CONCURRENCY=2


def test_workers_serve_metrics_inside_the_network_only() -> None:
    """SCSSQ_METRICS_PORT on every worker; compose exposes it to its network without a
    host port; Kubernetes names the port and annotates the pod for scraping. The
    multiprocess folder is the code's own temp dir, which must be writable."""
    worker = compose_config()["services"]["worker"]
    port = int(worker["environment"]["SCSSQ_METRICS_PORT"])
    assert port > 0 and Settings.from_env(worker["environment"]).metrics_port == port
    assert [str(port)] == [str(p) for p in worker["expose"]] and "ports" not in worker
    objects = k8s_objects()
    spec = container(objects, "scssq-worker")
    env = container_env(spec)
    port = Settings.from_env(env).metrics_port
    assert port > 0
    assert {"name": "metrics", "containerPort": port} in spec["ports"]
    annotations = objects[("Deployment", "scssq-worker")]["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # compiler_tasks.observability.metrics creates PROMETHEUS_MULTIPROC_DIR with tempfile.mkdtemp:
    # under TMPDIR or /tmp, a writable volume beside the read-only root filesystem.
    for files in (env, worker["environment"]):
        assert "PROMETHEUS_MULTIPROC_DIR" not in files, "the code sets its own, per worker"
        assert files.get("TMPDIR", "/tmp") == "/tmp"
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    tmp = next(m for m in spec["volumeMounts"] if m["mountPath"] == "/tmp")
    volumes = objects[("Deployment", "scssq-worker")]["spec"]["template"]["spec"]["volumes"]
    assert "emptyDir" in next(v for v in volumes if v["name"] == tmp["name"])
    # Flower and the other processes do not get the variable (only the worker serves)
    for name in ("flower", "s3-init", "redis-acl"):
        assert "SCSSQ_METRICS_PORT" not in compose_config()["services"][name]["environment"]
    assert "SCSSQ_METRICS_PORT" not in configmap()


def test_sentry_reaches_workers_optionally() -> None:
    """SENTRY_DSN from .env / the Secret (optional: empty or absent means off), and an
    environment name, for the processes that report to Sentry."""
    for service in ("worker", "flower", "s3-init"):
        env = compose_config()["services"][service]["environment"]
        assert env["SENTRY_DSN"] == env_example()["SENTRY_DSN"] == ""
        assert env["SENTRY_ENVIRONMENT"] == env_example()["SENTRY_ENVIRONMENT"]
    assert compose_vars(COMPOSE)["SENTRY_DSN"] == ":-", "no DSN: Sentry off, not an error"
    objects = k8s_objects()
    spec = container(objects, "scssq-worker")
    dsn = next(e for e in spec["env"] if e["name"] == "SENTRY_DSN")
    ref = dsn["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True and ref["key"] in secret_template()
    assert container_env(spec)["SENTRY_ENVIRONMENT"] == configmap()["SENTRY_ENVIRONMENT"]
    rate = Settings.from_env(container_env(spec)).traces_sample_rate
    assert 0 <= rate <= 1


def test_keda_user_may_count_the_queue_and_nothing_else() -> None:
    """The rules as written (default names): KEDA's EVAL, TYPE and LLEN on the queue."""
    rules = acl_users()[KEDA_USER]
    queue = Settings.from_env(container_env(container(k8s_objects(), "scssq-worker"))).queue
    assert rules[:5] == ["on", "resetpass", "resetkeys", "resetchannels", "-@all"]
    keys = [r for r in rules if "~" in r]
    assert keys == [f"~{queue}"], "the queue's key only"
    commands = {r for r in rules if r.startswith("+")}
    assert commands <= {"+ping", "+hello", "+auth", "+select", "+eval", "+type", "+llen"}
    assert not [r for r in rules if r.startswith("&")], "no channel"
    assert not [r for r in rules if r.startswith(("#", ">", "nopass"))], "no password in git"


# ---------------------------------------------------------------------------
# behaviour that runs here


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


# ---------------------------------------------------------------------------
# Redis ACL users on a real redis-server


def render_acl(tmp: Path, env: dict[str, str]) -> Path:
    """Run deploy/redis-acl-render.sh as compose and the init container do."""
    out = tmp / "users.acl"
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SCSSQ_", "REDIS_"))}
    proc = subprocess.run(
        ["sh", str(ACL_RENDER), str(ACL_RENDER.parent), str(out)],
        env={**keep, **env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, value in env.items():  # hashes only
        assert not name.endswith("PASSWORD") or value not in out.read_text(), name
    return out


@contextlib.contextmanager
def acl_redis(rendered: Path, tmp: Path) -> Iterator[RedisServer]:
    """A redis-server with an aclfile, then ``rendered`` loaded into it (ACL LOAD)."""
    aclfile = tmp / "server.acl"
    aclfile.write_text("")  # the default user stays open until the load
    server = RedisServer(extra=("--aclfile", str(aclfile)))
    try:
        aclfile.write_text(rendered.read_text())
        assert server.client().execute_command("ACL", "LOAD")
        yield server
    finally:
        server.stop()


def as_url(server: RedisServer, url: str) -> redis.Redis:
    parts = urlsplit(url)
    return redis.Redis(
        host="127.0.0.1", port=server.port, username=parts.username, password=parts.password
    )


def refused(action: Any) -> bool:
    try:
        action()
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as e:  # inside a script
        return "can't run this command" in str(e) or "NOPERM" in str(e)
    return False


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
