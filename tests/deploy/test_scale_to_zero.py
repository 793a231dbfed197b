"""The scale-to-zero overlay (deploy/k8s-scale-to-zero), offline: what it changes in the
base, that the numbers keep pods through their longest task, and that kustomize renders
it as :func:`~tests.support.deploy.keda_objects` does (the schema check is in
test_kubernetes.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import (
    K8S,
    SCALE_TO_ZERO,
    container,
    container_env,
    k8s_objects,
    keda_objects,
    load_yaml,
    longest_task,
    run,
)


def _scaled(root: Path) -> dict[str, Any]:
    (doc,) = [d for d in keda_objects(root) if d["kind"] == "ScaledObject"]
    return doc


def test_overlay_lets_the_pool_sleep_and_keeps_pods_through_the_longest_task() -> None:
    base, overlay = _scaled(K8S)["spec"], _scaled(SCALE_TO_ZERO)["spec"]
    assert base["minReplicaCount"] == 2, "the default stays 2"
    assert overlay["minReplicaCount"] == 0
    changed = {k for k in overlay if overlay[k] != base.get(k)}
    assert changed == {"minReplicaCount"}, "the overlay changes the minimum only"
    objects = k8s_objects()
    longest = longest_task(container_env(container(objects, "scssq-worker")))
    # An empty queue for cooldownPeriod removes the last pod: its compiles (taken off
    # the list) must be done by then, and a pod removed anyway shuts down warmly.
    assert overlay["cooldownPeriod"] > longest
    pod = objects[("Deployment", "scssq-worker")]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > longest
    (trigger,) = overlay["triggers"]
    assert trigger["metadata"]["activationListLength"] == "0", "one waiting task wakes it"


def test_overlay_builds_on_the_whole_base_and_every_file_is_used() -> None:
    kustomization = load_yaml(SCALE_TO_ZERO / "kustomization.yaml")
    assert kustomization["resources"] == ["../k8s"]
    patches = {entry["path"] for entry in kustomization["patches"]}
    files = {p.name for p in SCALE_TO_ZERO.iterdir()} - {"kustomization.yaml"}
    assert files == patches


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_overlay_as_the_tests_read_it() -> None:
    proc = run(["kubectl", "kustomize", str(SCALE_TO_ZERO)])
    assert proc.returncode == 0, proc.stderr
    keda, others = _split(proc.stdout)
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(keda, key=key) == sorted(keda_objects(SCALE_TO_ZERO), key=key)
    base = run(["kubectl", "kustomize", str(K8S)])
    assert base.returncode == 0, base.stderr
    assert others == _split(base.stdout)[1], "the overlay changes KEDA's objects only"


def _split(rendered: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    keda = [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    return keda, [d for d in docs if d not in keda]
