"""Helpers of tests/deploy/: the deployment files read as compose, Kubernetes, KEDA and
Docker would read them, offline.

* Schemas: the compose files against the Compose specification (check-jsonschema's
  vendored copy), the manifests with ``kubernetes-validate --strict`` (schemas shipped
  in the package), the KEDA objects against JSON schemas derived from KEDA's CRDs
  (vendored in deploy/schemas/keda, see generate.py there), the Dockerfiles with
  hadolint (a binary inside its wheel). Each tool is run from this interpreter's venv
  with an unusable HTTP proxy in its environment (:func:`offline_env`), so a tool that
  tried the network would fail here, not only in CI.
* Parsers: compose interpolation and merging, Kubernetes objects and containers, the
  Redis ACL files, Dockerfile instructions and stages, the worker command.
* ACL users on a real redis-server: :func:`render_acl`, :func:`acl_redis`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from compiler_tasks.coordination.acl import users
from compiler_tasks.settings import Settings
from tests.support.fleet import WORKER_ARGS
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_DEV = ROOT / "docker-compose.dev.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERFILE_DEV = ROOT / "deploy" / "Dockerfile.dev"
K8S = ROOT / "deploy" / "k8s"
#: The kustomize overlay of K8S whose worker pool scales to zero.
SCALE_TO_ZERO = ROOT / "deploy" / "k8s-scale-to-zero"
#: Manifests of built-in kinds (kubernetes-validate has their schemas).
CORE_MANIFESTS = [
    "namespace.yaml",
    "configmap.yaml",
    "redis.yaml",
    "worker.yaml",
    "flower.yaml",
    "gc.yaml",
]
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


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: how kustomize applies a patch to a kind it has no
    schema for (KEDA's), lists replaced whole."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def keda_objects(root: Path = K8S) -> list[dict[str, Any]]:
    """The KEDA objects ``kubectl apply -k root`` applies: keda.yaml's for K8S, and for
    an overlay of it its base's with the overlay's patches merged in (offline)."""
    if root.resolve() == K8S.resolve():
        return load_all(K8S / KEDA_MANIFEST)
    kustomization = load_yaml(root / "kustomization.yaml")
    (base,) = kustomization["resources"]
    docs = keda_objects(root / base)
    for entry in kustomization.get("patches", []):
        for change in load_all(root / entry["path"]):
            name = (change["kind"], change["metadata"]["name"])
            (index,) = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == name]
            docs[index] = merge_patch(docs[index], change)
    return docs


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
