"""The Kubernetes manifests and KEDA objects, offline: kubernetes-validate, KEDA's CRD
schemas, scaling numbers, probes, resources, secrets and metrics."""

from __future__ import annotations

import json
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
    COMPOSE,
    CORE_MANIFESTS,
    FLOWER_USER,
    K8S,
    K8S_VERSIONS,
    KEDA_REDIS_KEYS,
    KEDA_USER,
    SCALE_TO_ZERO,
    SECRET_TEMPLATE,
    acl_users,
    compose_config,
    compose_vars,
    configmap,
    container,
    container_env,
    env_example,
    k8s_objects,
    keda_objects,
    keda_schema,
    load_all,
    load_yaml,
    longest_task,
    pod_containers,
    run,
    secret_template,
    tool,
    worker_command,
)


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


@pytest.mark.parametrize("root", [K8S, SCALE_TO_ZERO], ids=["k8s", "k8s-scale-to-zero"])
def test_keda_objects_match_the_keda_crd_schemas(root: Path, tmp_path: Path) -> None:
    """Against JSON schemas derived from KEDA's CRDs (deploy/schemas/keda/generate.py),
    strict: a misspelt field fails like a wrong type or a missing required one. The
    scale-to-zero overlay's objects too, as its patches leave them."""
    docs = keda_objects(root)
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
    # The default keeps 2 pods (a drain or rollout always leaves one); zero is the
    # overlay's (tests/deploy/test_scale_to_zero.py).
    assert scaled["minReplicaCount"] >= 2
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


def test_gc_cronjob_runs_scssq_gc_with_the_workers_access() -> None:
    """gc deletes from the store and takes compile locks: the workers' Redis user and
    S3 credentials, one run at a time, the same image."""
    objects = k8s_objects()
    cron = objects[("CronJob", "scssq-gc")]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    (gc,) = pod["containers"]
    assert gc["command"][-3:] == ["scssq", "gc", "--apply"]
    worker = container(objects, "scssq-worker")
    assert gc["image"] == worker["image"]
    gc_env, worker_env = container_env(gc), container_env(worker)
    for name in ("SCSSQ_REDIS_URL", "SCSSQ_STORE", "SCSSQ_PREFIX", "AWS_ACCESS_KEY_ID"):
        assert gc_env[name] == worker_env[name], name
    assert urlsplit(gc_env["SCSSQ_REDIS_URL"]).username == WORKER_USER
