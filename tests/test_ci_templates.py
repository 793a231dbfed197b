"""The CI templates: the GitHub Actions composite action and the GitLab CI template.

* Schemas, offline: action.yml against check-jsonschema's vendored GitHub Actions schema,
  the GitLab template against its vendored GitLab CI schema, also as a concrete job (the
  schema lets a hidden ``.job`` hold anything), each run with an unusable HTTP proxy.
* What the templates run, for real: the action's ``runs.steps`` and the GitLab job's
  ``script:`` lines are taken from the YAML and run with bash the way each CI runs them
  (GitHub expressions filled in from the action's inputs, GitLab variables from the
  template), against a real redis-server and real workers, in a temporary checkout.
  Both run deploy/ci/scssq-ci.sh; the client is the one installed in this venv
  (``SCSSQ_CI_INSTALL=none``), since installing it needs a package index. A success writes
  the CSS and exits 0, a compile error exits 1, an unreachable Redis exits 3: the job's
  exit code is scssq submit's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fleet import Fleet
from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CI = ROOT / "deploy" / "ci"
SCRIPT = CI / "scssq-ci.sh"
ACTION_DIR = CI / "github"
ACTION = ACTION_DIR / "action.yml"
GITLAB = CI / "gitlab" / "scssq.gitlab-ci.yml"
GITLAB_JOB = ".scssq-submit"
COMMIT = "c" * 40
#: A GitHub expression, ``${{ ... }}``.
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def offline_env() -> dict[str, str]:
    """The environment with an unusable proxy: any network access fails fast."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    dead = "http://127.0.0.1:9"
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead)
    return env


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=offline_env(),
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def gitlab_job(config: dict[str, Any] | None = None) -> dict[str, Any]:
    job: dict[str, Any] = (config or load(GITLAB))[GITLAB_JOB]
    return job


# ---------------------------------------------------------------------------
# schemas, offline


def test_action_matches_the_github_actions_schema_offline() -> None:
    proc = check_jsonschema("vendor.github-actions", ACTION)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_action_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    action = load(ACTION)
    action["runs"]["steps"][-1]["shel"] = action["runs"]["steps"][-1].pop("shell")
    bad = tmp_path / "action.yml"
    bad.write_text(yaml.safe_dump(action))
    proc = check_jsonschema("vendor.github-actions", bad)
    assert proc.returncode == 1 and "shel" in proc.stdout, proc.stdout + proc.stderr


def test_gitlab_template_matches_the_gitlab_ci_schema_offline(tmp_path: Path) -> None:
    """As shipped, and with the hidden job made concrete so the job schema applies."""
    proc = check_jsonschema("vendor.gitlab-ci", GITLAB)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    concrete = tmp_path / "concrete.gitlab-ci.yml"
    concrete.write_text(yaml.safe_dump({"scssq-submit": gitlab_job()}))
    proc = check_jsonschema("vendor.gitlab-ci", concrete)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gitlab_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    job = gitlab_job()
    job["artifact"] = job.pop("artifacts")
    bad = tmp_path / "bad.gitlab-ci.yml"
    bad.write_text(yaml.safe_dump({"scssq-submit": job}))
    proc = check_jsonschema("vendor.gitlab-ci", bad)
    assert proc.returncode == 1 and "artifact" in proc.stdout, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------
# what the templates run


def test_the_action_sets_up_python_then_runs_the_shared_script() -> None:
    runs = load(ACTION)["runs"]
    assert runs["using"] == "composite"
    setup, submit = runs["steps"]
    assert re.fullmatch(r"actions/setup-python@v\d+(\.\d+)*", setup["uses"]), setup["uses"]
    assert submit["shell"] == "bash"
    assert "$GITHUB_ACTION_PATH/../scssq-ci.sh" in submit["run"]
    assert (ACTION_DIR / ".." / "scssq-ci.sh").resolve() == SCRIPT
    assert "|| true" not in submit["run"] and "continue-on-error" not in submit
    assert load(ACTION)["outputs"]["exit-code"]["value"] == "${{ steps.submit.outputs.exit-code }}"


def test_the_gitlab_job_runs_the_shared_script_on_the_pipeline_commit() -> None:
    script = gitlab_job()["script"]
    assert script[-1] == 'bash "$SCSSQ_CI_DIR/deploy/ci/scssq-ci.sh" "$CI_COMMIT_SHA"'
    assert not any("|| true" in line for line in script)


def test_the_default_install_is_the_scssq_checkout_the_script_is_in() -> None:
    """Empty SCSSQ_CI_INSTALL installs from the script's ../.. (the action's own checkout)."""
    assert 'install="${SCSSQ_CI_INSTALL:-$here/../..}"' in SCRIPT.read_text()
    project = tomllib.loads((SCRIPT.parent / ".." / ".." / "pyproject.toml").read_text())
    assert project["project"]["name"] == "scssq"


def github_expression(expr: str, context: dict[str, str]) -> str:
    if expr not in context:
        pytest.fail(f"action.yml uses ${{{{ {expr} }}}}, which this test does not provide")
    return context[expr]


def render(value: str, context: dict[str, str]) -> str:
    return EXPRESSION.sub(lambda m: github_expression(m.group(1), context), value)


def run_action(
    checkout: Path, env: dict[str, str], tmp: Path, **with_: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run action.yml's steps as a runner would; returns the last process and the outputs."""
    action = load(ACTION)
    temp = tmp / "runner-temp"
    temp.mkdir(exist_ok=True)
    context = {"github.sha": COMMIT, "runner.temp": str(temp)}
    unknown = set(with_) - set(action["inputs"])
    assert not unknown, f"not inputs of the action: {unknown}"
    for name, spec in action["inputs"].items():
        value = with_.get(name, str(spec.get("default", "")))
        context[f"inputs.{name}"] = render(value, context)
    output_file = tmp / "github-output"
    output_file.write_text("")
    outputs: dict[str, str] = {}
    proc = None
    for step in action["runs"]["steps"]:
        if "uses" in step:  # actions/setup-python: this interpreter stands in for its Python
            context[f"steps.{step['id']}.outputs.python-path"] = sys.executable
            continue
        step_env = {k: render(str(v), context) for k, v in step.get("env", {}).items()}
        script = tmp / f"step-{step['id']}.sh"
        script.write_text(render(step["run"], context))
        cwd = checkout / render(step.get("working-directory", "."), context)
        proc = subprocess.run(
            # what GitHub runs for `shell: bash`
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env={
                **env,
                **step_env,
                "GITHUB_ACTION_PATH": str(ACTION_DIR),
                "GITHUB_OUTPUT": str(output_file),
                "RUNNER_TEMP": str(temp),
            },
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        for line in output_file.read_text().splitlines():
            key, _, value = line.partition("=")
            outputs[key] = value
            context[f"steps.{step['id']}.outputs.{key}"] = value
        if proc.returncode != 0:
            break
    assert proc is not None
    return proc, {k: render(v["value"], context) for k, v in action["outputs"].items()}


@pytest.fixture(scope="module")
def scssq_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding this tree's deploy/ci at the template's default ref: what
    the GitLab job clones (the real one is on a GitLab server)."""
    repo = tmp_path_factory.mktemp("scssq-repo")
    (repo / "deploy" / "ci").mkdir(parents=True)
    (repo / "deploy" / "ci" / "scssq-ci.sh").write_bytes(SCRIPT.read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "scssq"], check=True)
    subprocess.run([*git, "tag", gitlab_job()["variables"]["SCSSQ_CI_REF"]], check=True)
    return repo


def run_gitlab(
    checkout: Path, env: dict[str, str], tmp: Path, repo: Path, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run the job's script: lines as a GitLab runner's bash does, in the checkout."""
    job = gitlab_job()
    unknown = set(variables) - set(job["variables"])
    assert not unknown, f"not variables of {GITLAB_JOB}: {unknown}"
    script = tmp / "gitlab-job.sh"
    script.write_text("set -eo pipefail\n" + "\n".join(job["script"]) + "\n")
    return subprocess.run(
        ["bash", str(script)],
        cwd=checkout,
        env={
            **env,
            **{k: str(v) for k, v in job["variables"].items()},
            "SCSSQ_CI_REPO": str(repo),
            **variables,
            "CI_COMMIT_SHA": COMMIT,
            "CI_PROJECT_DIR": str(checkout),
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def run_template(
    kind: str, checkout: Path, fleet: Fleet, tmp: Path, repo: Path, args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], Path, dict[str, str]]:
    """Run one template's steps; returns the process, the --json result file, the outputs."""
    base = {**fleet.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    if kind == "github":
        proc, outputs = run_action(checkout, base, tmp, args=args, install="none")
        return proc, Path(outputs["result"]), outputs
    proc = run_gitlab(checkout, base, tmp, repo, SCSSQ_CI_ARGS=args, SCSSQ_CI_INSTALL="none")
    return proc, checkout / gitlab_job()["variables"]["SCSSQ_CI_RESULT"], {}


def checkout_with(tmp: Path, files: dict[str, str]) -> Path:
    checkout = tmp / "checkout"
    for rel, text in files.items():
        path = checkout / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return checkout


def why(proc: subprocess.CompletedProcess[str], fleet: Fleet) -> str:
    return f"{proc.stdout}\n{proc.stderr}\n--- workers:\n{fleet.logs()}"


KINDS = ["github", "gitlab"]


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_a_submit_writes_the_css_and_exits_0(
    kind: str, make_fleet: Any, tmp_path: Path, scssq_repo: Path
) -> None:
    fleet = make_fleet(workers=1)
    checkout = checkout_with(
        tmp_path,
        {
            "my styles/main.scss": '@import "colors";\n.a { color: $brand; }\n',
            "my styles/_colors.scss": "$brand: #123456;\n",
        },
    )
    args = '--entry "my styles/main.scss" --project demo --out out'
    proc, result, outputs = run_template(kind, checkout, fleet, tmp_path, scssq_repo, args)
    assert proc.returncode == 0, why(proc, fleet)
    css = (checkout / "out" / "my styles" / "main.css").read_text()
    assert "color: #123456" in css
    report = json.loads(result.read_text())
    assert report["ok"] and report["commit"] == COMMIT and report["outcome"] == "compiled"
    assert report["entries"][0]["entry"] == "my styles/main.scss"
    assert len(fleet.engine_runs()) == 1
    if kind == "github":
        assert outputs["exit-code"] == "0"


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_a_compile_error_fails_the_job_with_exit_1(
    kind: str, make_fleet: Any, tmp_path: Path, scssq_repo: Path
) -> None:
    fleet = make_fleet(workers=1)
    checkout = checkout_with(tmp_path, {"main.scss": ".a { color: ; \n"})
    args = "--entry main.scss --project demo"
    proc, result, outputs = run_template(kind, checkout, fleet, tmp_path, scssq_repo, args)
    assert proc.returncode == 1, why(proc, fleet)
    assert "main.scss:1" in proc.stderr
    report = json.loads(result.read_text())
    assert report["ok"] is False and report["exit_code"] == 1
    assert not (checkout / "out").exists()
    if kind == "github":
        assert outputs["exit-code"] == "1"


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_an_unreachable_redis_fails_the_job_with_exit_3(
    kind: str, make_fleet: Any, tmp_path: Path, scssq_repo: Path
) -> None:
    fleet = make_fleet(workers=0)
    checkout = checkout_with(tmp_path, {"main.scss": ".a { b: c; }\n"})
    args = "--entry main.scss --project demo --timeout 3"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    proc, result, outputs = run_template(
        kind, checkout, fleet, tmp_path, scssq_repo, args, SCSSQ_REDIS_URL=dead
    )
    assert proc.returncode == 3, why(proc, fleet)
    assert "unreachable" in proc.stderr
    assert json.loads(result.read_text())["exit_code"] == 3
    if kind == "github":
        assert outputs["exit-code"] == "3"


def test_unparsable_args_are_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCSSQ_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["bash", str(SCRIPT), COMMIT],
        cwd=tmp_path,
        env={**env, "SCSSQ_CI_INSTALL": "none", "SCSSQ_CI_ARGS": "--entry 'main.scss"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "SCSSQ_CI_ARGS does not parse" in proc.stderr


def usage_snippets() -> list[tuple[str, Any]]:
    """The YAML examples of README.md and docs/deploy.md that use a template."""
    found = []
    for page in (ROOT / "README.md", ROOT / "docs" / "deploy.md"):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            if "deploy/ci/" in block:
                found.append((page.name, yaml.safe_load(block)))
    return found


def test_the_documented_usage_matches_the_templates(tmp_path: Path) -> None:
    """Every documented step passes only inputs the action declares; every documented
    GitLab job, merged with the template as ``extends:`` does, is a valid job that sets
    only variables the template declares."""
    inputs = set(load(ACTION)["inputs"])
    template = gitlab_job()
    kinds = set()
    for page, snippet in usage_snippets():
        if isinstance(snippet, list):
            kinds.add("github")
            (step,) = [s for s in snippet if "deploy/ci/github@" in s.get("uses", "")]
            assert set(step.get("with", {})) <= inputs, (page, step)
            assert {"SCSSQ_REDIS_URL", "SCSSQ_STORE"} <= set(step["env"]), (page, step)
            continue
        kinds.add("gitlab")
        (include,) = snippet["include"]
        assert include["file"] == GITLAB.relative_to(ROOT).as_posix(), page
        for name, job in snippet.items():
            if name == "include":
                continue
            assert job["extends"] == GITLAB_JOB, (page, name)
            assert set(job.get("variables", {})) <= set(template["variables"]), (page, job)
            merged = {**template, **{k: v for k, v in job.items() if k != "extends"}}
            merged["variables"] = {**template["variables"], **job.get("variables", {})}
            assert merged["variables"]["SCSSQ_CI_PROJECT"] == include["project"], (page, name)
            assert merged["variables"]["SCSSQ_CI_REF"] == include["ref"], (page, name)
            concrete = tmp_path / f"{page}-{name}.gitlab-ci.yml"
            concrete.write_text(yaml.safe_dump({name: merged}))
            proc = check_jsonschema("vendor.gitlab-ci", concrete)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    assert kinds == {"github", "gitlab"}
