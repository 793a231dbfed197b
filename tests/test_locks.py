"""The committed locks (requirements/*.lock, made by `make lock`) against pyproject.toml.

Every install the project makes (Makefile, .ci/run, both images) is
``pip install --require-hashes -r <lock>``; these tests catch a lock that no longer
matches pyproject.toml (a range edited without `make lock`), a pin without hashes,
locks that disagree on a version, and a runtime range without an upper bound.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
LOCKS = ["dev", "client", "worker", "build", "bench"]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: One requirement of a lock: ``name==version [; marker]`` then its ``--hash`` lines.
ENTRY = re.compile(
    r"^(\S+)==(\S+?)(?: ; ([^\\\n]+?))? \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.M
)


def pins(name: str) -> dict[str, str]:
    """The lock's pins that apply to this interpreter: canonical name -> version."""
    found: dict[str, str] = {}
    for pkg, version, marker, _ in ENTRY.findall((REQUIREMENTS / f"{name}.lock").read_text()):
        if not marker or Marker(marker).evaluate():
            found[canonicalize_name(pkg)] = version
    return found


def build_in() -> list[Requirement]:
    lines = (REQUIREMENTS / "build.in").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def extra(name: str) -> list[Requirement]:
    """An extra's requirements, with the extras it names of scssq itself expanded."""
    found = []
    for text in PROJECT["optional-dependencies"][name]:
        req = Requirement(text)
        if req.name == PROJECT["name"]:
            found += [r for e in sorted(req.extras) for r in extra(e)]
        else:
            found.append(req)
    return found


def wanted(lock: str) -> list[Requirement]:
    """What `make lock` compiles into ``lock``."""
    runtime = [Requirement(r) for r in PROJECT["dependencies"]]
    return {
        "client": runtime,
        "worker": runtime + extra("worker"),
        "build": build_in(),
        "dev": runtime + extra("dev") + build_in(),
        "bench": runtime + extra("dev") + extra("bench") + build_in(),
    }[lock]


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    text = (REQUIREMENTS / f"{lock}.lock").read_text()
    starts = [line for line in text.splitlines() if line and not line[0].isspace()]
    requirements = [line for line in starts if not line.startswith("#")]
    assert requirements, lock
    entries = ENTRY.findall(text)
    assert len(entries) == len(requirements), "a requirement without == or without hashes"
    assert "make lock" in text.splitlines()[1], "made by `make lock`"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_satisfies_pyproject(lock: str) -> None:
    locked = pins(lock)
    for req in wanted(lock):
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is not in {lock}.lock: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{lock}.lock pins {name}=={locked[name]}, outside {req}: run `make lock`"
        )


@pytest.mark.parametrize("lock", ["client", "worker", "build", "bench"])
def test_locks_agree_with_the_dev_lock(lock: str) -> None:
    dev, other = pins("dev"), pins(lock)
    differ = {n: (v, dev[n]) for n, v in other.items() if n in dev and dev[n] != v}
    assert not differ, differ
    if lock != "bench":
        assert other.keys() <= dev.keys(), other.keys() - dev.keys()


def test_runtime_dependencies_stop_below_their_next_major() -> None:
    runtime = [Requirement(r) for r in PROJECT["dependencies"]]
    for req in runtime + [r for e in ("worker", "local", "s3", "sentry") for r in extra(e)]:
        text = str(req)
        operators = {spec.operator for spec in req.specifier}
        assert operators & {"<", "==", "~="}, f"{text} has no upper bound"


def test_lock_diff_names_what_differs(tmp_path: Path) -> None:
    lock = tmp_path / "some.lock"
    lock.write_text(
        "pytest==0.0.1 \\\n    --hash=sha256:" + "0" * 64 + "\n"
        "not-installed-anywhere==1.0 \\\n    --hash=sha256:" + "1" * 64 + "\n"
        "elsewhere-only==9.9 ; sys_platform == 'no-such-platform' \\\n    --hash=sha256:"
        + "2" * 64
        + "\n"
    )
    script = ROOT / "scripts" / "lock_diff.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(lock)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:]}
    assert lines["pytest"] == ["0.0.1", "->", pytest.__version__]
    assert lines["not-installed-anywhere"] == ["1.0", "->", "-"]
    assert "elsewhere-only" not in lines  # its marker does not apply here
    assert "scssq" not in lines  # the project itself is not a dependency
