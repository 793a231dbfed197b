"""``pip install scssq`` as a CI runner does it: the client alone, in a brand-new venv.

The wheel is built from a copy of this checkout and installed with
``requirements/client.lock`` (hash-checked, from the package index) the way a runner
installs it; pip compiles the modules' bytecode at install, as for any user. Used by
the install test and by the per-job benchmark (``bench/peers.py``), which must time the
client a CI job runs, not this checkout's editable install.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=True, **kwargs
    )  # type: ignore[call-overload]


def site_packages(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3*/site-packages")
    return site


def build_wheel(root: Path) -> Path:
    """The scssq wheel, built from a copy of the tree (setuptools leaves build/ beside
    the sources it builds)."""
    tree = root / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "celeryconfig.py"):
        shutil.copy2(REPO / name, tree / name)
    for package in ("compiler_tasks", "cli"):
        shutil.copytree(REPO / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", root / "wheels", tree)  # fmt: skip
    (wheel,) = (root / "wheels").glob("scssq-*.whl")
    return wheel


def make_venv(venv: Path) -> list[str | Path]:
    """A bare venv; returns its ``pip install`` command."""
    run(sys.executable, "-m", "venv", venv)
    return [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]


def install_client(pip: list[str | Path], wheel: Path) -> None:
    """The client's pinned dependencies, then the wheel, into the venv of ``pip``."""
    run(*pip, "--require-hashes", "-r", REPO / "requirements" / "client.lock")
    run(*pip, "--no-deps", wheel)
    run(pip[0], "-m", "pip", "check")


def client_venv(root: Path) -> Path:
    """A venv under ``root`` with the client installed as a runner installs it."""
    venv = root / "venv"
    install_client(make_venv(venv), build_wheel(root))
    return venv
