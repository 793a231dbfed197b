"""``pip install scssq`` on a CI runner: the client alone, pure Python and small.

The wheel is built from this checkout and installed into a brand-new venv with
``requirements/client.lock`` (hash-checked, from the package index), as a runner would
install it. Then the installed ``scssq`` submits to a real fleet, and a command that
needs an extra it lacks says which one (exit 2).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.client_install import build_wheel, install_client, make_venv, site_packages
from tests.test_fleet import HASH1, make_src, submit_args

#: The budget of issue "A client that costs a CI job less than compiling".
MAX_BYTES = 35 * 1024 * 1024
MAX_PACKAGES = 18
#: What a bare venv holds before anything is installed.
BARE = {"pip", "setuptools"}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _dists(site: Path) -> dict[str, Path]:
    return {d.name.split("-")[0].lower(): d for d in site.glob("*.dist-info")}


@pytest.fixture(scope="module")
def slim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("slim")
    wheel = build_wheel(root)
    venv = root / "venv"
    pip = make_venv(venv)
    site = site_packages(venv)
    bare_size, bare = _size(site), set(_dists(site))
    install_client(pip, wheel)
    return {"venv": venv, "site": site, "bare_size": bare_size, "bare": bare}


def test_the_client_install_is_pure_python_and_small(slim: dict[str, object]) -> None:
    site = slim["site"]
    assert isinstance(site, Path)
    added = {name: d for name, d in _dists(site).items() if name not in slim["bare"]}
    assert "scssq" in added and len(added) - 1 <= MAX_PACKAGES, sorted(added)
    size = _size(site) - int(str(slim["bare_size"]))
    assert size <= MAX_BYTES, f"{size / 2**20:.1f} MB"
    for name, dist in added.items():  # installs on arm64 and musl runners too
        wheel = (dist / "WHEEL").read_text()
        assert "Root-Is-Purelib: true" in wheel, (name, wheel)
        assert "Tag: py3-none-any" in wheel or "Tag: py2.py3-none-any" in wheel, (name, wheel)
    fleet_only = {"celery", "kombu", "redis", "boto3", "botocore", "libsass", "sentry_sdk"}
    assert not fleet_only & set(added), fleet_only & set(added)


def test_the_installed_client_submits_to_a_real_fleet(
    slim: dict[str, object], make_fleet, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": "$c: red;\n.a { color: $c; }\n"})
    scssq = str(Path(str(slim["venv"])) / "bin" / "scssq")
    env = {**fleet.env, "PATH": f"{Path(scssq).parent}:{os.environ['PATH']}"}
    for out, outcome in (("o1", "compiled"), ("o2", "cached")):
        proc = subprocess.run(
            [scssq, "submit", HASH1, *submit_args(src, tmp_path / out)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0 and proc.stdout.startswith(outcome), proc.stderr[-2000:]
        assert "color: red" in (tmp_path / out / "main.css").read_text()


def test_a_missing_extra_is_named_with_exit_2(slim: dict[str, object], tmp_path: Path) -> None:
    scssq = str(Path(str(slim["venv"])) / "bin" / "scssq")
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCSSQ_", "SENTRY_"))}
    local = subprocess.run(
        [scssq, "submit", HASH1, *submit_args(src, tmp_path / "o"), "--fallback", "local",
         "--timeout", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**env, "SCSSQ_REDIS_URL": "redis://127.0.0.1:1/0"},
    )  # fmt: skip
    assert local.returncode == 2, local.stderr[-2000:]
    assert "pip install 'scssq[local]'" in local.stderr
    s3 = subprocess.run(
        [scssq, "health"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**env, "SCSSQ_REDIS_URL": "redis://127.0.0.1:1/0", "SCSSQ_STORE": "s3://bucket"},
    )  # fmt: skip
    assert s3.returncode == 2, s3.stdout + s3.stderr
    assert "pip install 'scssq[s3]'" in s3.stderr
    gc = subprocess.run([scssq, "gc"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert gc.returncode == 2 and "pip install 'scssq[worker]'" in gc.stderr, gc.stderr
