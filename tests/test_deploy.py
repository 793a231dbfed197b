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
* Behaviour that runs here: the bucket init script against a real S3 API (moto), and
  Flower's basic auth as configured, against a real Flower process.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from compiler_tasks.settings import Settings
from tests.support.fleet import WORKER_ARGS
from tests.support.procs import free_port, stop_group, wait_for

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
#: The Celery pool size flag: a fixed one, never --autoscale (see README, Deploy).
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


def keda_schema(kind: str) -> Path:
    return KEDA_SCHEMAS / f"{kind.lower()}-keda.sh-v1alpha1.json"


def configmap() -> dict[str, str]:
    return dict(k8s_objects()[("ConfigMap", "scssq-config")]["data"])


def secret_template() -> dict[str, str]:
    return dict(k8s_objects()[("Secret", "scssq-secrets")]["stringData"])


def container_env(spec: dict[str, Any]) -> dict[str, str]:
    """A container's environment as Kubernetes builds it, secrets from the template."""
    env = dict(configmap()) if spec.get("envFrom") else {}
    secrets = secret_template()
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
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "compiler_tasks.probe", "ready"]


def test_compose_redis_has_a_password_noeviction_and_persistence() -> None:
    services = compose_config()["services"]
    command = services["redis"]["command"]
    password = env_example()["REDIS_PASSWORD"]
    assert command[command.index("--requirepass") + 1] == password
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"
    url = services["worker"]["environment"]["SCSSQ_REDIS_URL"]
    assert urlsplit(url).password == password and urlsplit(url).hostname == "redis"
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
    for name in ("REDIS_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "FLOWER_BASIC_AUTH"):
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
    assert "pip install -e '.[dev]'" in deps and "sha256sum pyproject.toml" in deps


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
    # authentication: the password the workers use, from the same Secret key
    auth = objects[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
    (ref,) = auth["secretTargetRef"]
    assert ref["parameter"] == "password"
    worker_spec = container(objects, "scssq-worker")
    redis_ref = next(e for e in worker_spec["env"] if e["name"] == "REDIS_PASSWORD")
    assert redis_ref["valueFrom"]["secretKeyRef"] == {"name": ref["name"], "key": ref["key"]}


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
        assert spec[probe]["exec"]["command"] == ["python", "-m", "compiler_tasks.probe", kind]
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


def test_redis_in_kubernetes_has_noeviction_persistence_and_a_password() -> None:
    objects = k8s_objects()
    (redis,) = objects[("StatefulSet", "scssq-redis")]["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert objects[("StatefulSet", "scssq-redis")]["spec"]["volumeClaimTemplates"]


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
    assert all(
        v in ("CHANGE-ME", "") or v.endswith(":CHANGE-ME") for v in secret_template().values()
    )
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert SECRET_TEMPLATE not in kustomization["resources"], "the template is never applied"
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|DSN|AUTH|ACCESS_KEY")
    assert not [k for k in configmap() if sensitive.search(k)], "secrets belong in the Secret"
    for (kind, name), doc in objects.items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        for spec in doc["spec"]["template"]["spec"]["containers"]:
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
            for spec in doc["spec"]["template"]["spec"]["containers"]:
                _, _, tag = spec["image"].rpartition(":")
                assert tag and tag != "latest" and "/" not in tag, f"{name}: pin {spec['image']}"


def test_configmap_and_secret_template_load_as_settings() -> None:
    settings = Settings.from_env(container_env(container(k8s_objects(), "scssq-worker")))
    assert settings.store_url.startswith("s3://")
    assert settings.redis_url.startswith("redis://:CHANGE-ME@scssq-redis:6379/")


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
