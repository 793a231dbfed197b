"""The Dockerfiles, offline: hadolint, the rules that matter, the locked wheel-only
production image, the dev image and the dev compose services."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from tests.support.deploy import (
    DOCKERFILE,
    DOCKERFILE_DEV,
    ROOT,
    compose_config,
    container,
    dockerfile_instructions,
    exec_form,
    k8s_objects,
    offline_env,
    run,
    stages,
    tool,
    worker_command,
)
from tests.support.fleet import WORKER_ARGS


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


def test_client_image_installs_the_client_lock_only() -> None:
    """The CI client image: client.lock's wheels (hash-checked) and scssq's, nothing of the
    fleet's; the default target stays the worker image (the last stage)."""
    names = [s[0][1].split()[-1] for s in stages(DOCKERFILE)]
    assert names == ["builder", "client", "runtime"], names
    builder, client, _ = stages(DOCKERFILE)
    assert any(i == "RUN" and "cp requirements/worker.lock requirements/client.lock" in a
               for i, a in builder)  # fmt: skip
    (install,) = [a for i, a in client if i == "RUN" and "pip install" in a]
    assert "--no-index" in install and "--require-hashes -r /wheels/client.lock" in install
    assert "worker.lock" not in install and "--no-deps" in install.split("&&")[1]
    assert not any(i in ("COPY", "ADD") for i, _ in client)
    (entrypoint,) = [a for i, a in client if i == "ENTRYPOINT"]
    assert exec_form(entrypoint) == ["scssq"]


def test_production_image_is_multi_stage_and_installs_wheels_only() -> None:
    builder, _client, runtime = stages(DOCKERFILE)
    assert "AS builder" in builder[0][1] and "AS runtime" in runtime[0][1]
    assert "-slim-" in runtime[0][1].split()[0]
    assert any(i == "RUN" and "pip wheel" in a for i, a in builder)
    assert not any(i in ("COPY", "ADD") for i, _ in runtime), "the runtime copies no sources"
    installs = [a for i, a in runtime if i == "RUN" and "pip install" in a]
    assert len(installs) == 1 and "--no-index" in installs[0] and "from=builder" in installs[0]


def test_production_image_installs_the_worker_lock_with_hashes() -> None:
    """The image's dependencies are requirements/worker.lock's, every hash checked."""
    builder, _client, runtime = stages(DOCKERFILE)
    copies = [a.split() for i, a in builder if i == "COPY"]
    assert [
        "requirements/worker.lock",
        "requirements/client.lock",
        "requirements/build.lock",
        "requirements/",
    ] in copies
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
