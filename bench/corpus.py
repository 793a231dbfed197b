"""The framework corpus: pinned npm packages fetched once into an ignored cache.

``python bench/corpus.py`` (or :func:`ensure` from tests and benchmarks) makes sure that
``bench/.corpus/<name>-<version>/package`` holds the unpacked npm tarball of each pinned
package. Tarballs come from the npm registry with ``npm pack`` (which honours the npm
configuration: registry, proxy, cache), or over the registry's HTTP API when ``npm`` is
not installed, and are checked against the pinned sha512 integrity before anything is
unpacked. A finished package is marked ``.complete``; later calls cost a ``stat``. A
fetch failure raises :class:`CorpusError`: callers (the framework tests) fail, never skip.

The cache is in ``.gitignore`` (never committed); ``SCSSQ_CORPUS_DIR`` moves it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: name -> (version, npm ``dist.integrity``)
PACKAGES: dict[str, tuple[str, str]] = {
    "bootstrap": (
        "5.3.3",
        "sha512-8HLCdWgyoMguSO9o+aH+iuZ+aht+mzW0u3HIMzVu7Srrpv7EBBxTnrFlSCskwdY1+EOFQSm7uMJhNQHkdPcmjg==",
    ),
    "bulma": (
        "1.0.2",
        "sha512-D7GnDuF6seb6HkcnRMM9E739QpEY9chDzzeFrHMyEns/EXyDJuQ0XA0KxbBl/B2NTsKSoDomW61jFGFaAxhK5A==",
    ),
    "foundation-sites": (
        "6.8.1",
        "sha512-9JAuLqVgzf7EIRUqVKeYN68dU/SGe0aNJPgnejdfJKSWnBFdQLF3Zvy9WEQ1gE/gnyvwG3Ia3LkkEd9774n0bQ==",
    ),
    # a second major of a package needs its own corpus name (see NPM_NAMES)
    "bootstrap4": (
        "4.6.2",
        "sha512-51Bbp/Uxr9aTuy6ca/8FbFloBUJZLHwnhTcnjIeRn2suQWsWzcuJhGjKDB5eppVte/8oCdOL3VuwxvZDUggwGQ==",
    ),
}
#: corpus name -> npm package name, where they differ
NPM_NAMES: dict[str, str] = {"bootstrap4": "bootstrap"}
REGISTRY = "https://registry.npmjs.org"
DEFAULT_DIR = Path(__file__).resolve().parent / ".corpus"
#: Seconds one download may take.
FETCH_TIMEOUT = 300


class CorpusError(Exception):
    """A package could not be fetched or did not match its pinned integrity."""


def corpus_dir() -> Path:
    return Path(os.environ.get("SCSSQ_CORPUS_DIR") or DEFAULT_DIR)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_integrity(data: bytes, integrity: str, spec: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise CorpusError(f"{spec}: tarball integrity {algorithm}-{actual} != pinned {integrity}")


def _npm_pack(spec: str, workdir: Path) -> bytes:
    try:
        proc = subprocess.run(
            ["npm", "pack", spec, "--silent", "--pack-destination", str(workdir)],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT,
            cwd=workdir,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CorpusError(f"npm pack {spec} took more than {FETCH_TIMEOUT} s") from None
    if proc.returncode != 0:
        raise CorpusError(f"npm pack {spec} failed: {proc.stderr.strip()[-2000:]}")
    tarballs = list(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise CorpusError(f"npm pack {spec} left {len(tarballs)} tarballs")
    return tarballs[0].read_bytes()


def _http_fetch(name: str, version: str) -> bytes:
    url = f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            return bytes(response.read())
    except OSError as e:
        raise CorpusError(f"cannot download {url}: {e}") from None


def fetch(name: str, version: str, integrity: str, workdir: Path) -> bytes:
    """The verified tarball of ``name@version``."""
    spec = f"{name}@{version}"
    data = _npm_pack(spec, workdir) if shutil.which("npm") else _http_fetch(name, version)
    _check_integrity(data, integrity, spec)
    return data


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Unpack plain files and folders only (Python < 3.11.4 has no extraction filter)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    members = []
    for member in tar.getmembers():
        parts = member.name.split("/")
        if member.name.startswith("/") or ".." in parts:
            raise tarfile.TarError(f"unsafe member {member.name!r}")
        if member.isreg() or member.isdir():
            members.append(member)
    tar.extractall(dest, members=members)


def ensure(name: str) -> Path:
    """The unpacked package directory of a pinned package, fetched when missing."""
    if name not in PACKAGES:
        raise CorpusError(f"{name!r} is not in the corpus; choose one of {', '.join(PACKAGES)}")
    version, integrity = PACKAGES[name]
    base = corpus_dir()
    target = base / f"{name}-{version}"
    package = target / "package"
    if (target / ".complete").exists():
        return package
    with _locked(base):
        if (target / ".complete").exists():
            return package
        with tempfile.TemporaryDirectory(dir=base, prefix=".fetch-") as tmp:
            work = Path(tmp)
            data = fetch(NPM_NAMES.get(name, name), version, integrity, work)
            unpacked = work / "unpacked"
            archive = work / "package.tgz"
            archive.write_bytes(data)
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    _extract(tar, unpacked)
            except (tarfile.TarError, OSError) as e:
                raise CorpusError(f"{name}@{version}: cannot unpack the tarball: {e}") from None
            if not (unpacked / "package").is_dir():
                raise CorpusError(f"{name}@{version}: the tarball has no package/ folder")
            shutil.rmtree(target, ignore_errors=True)
            unpacked.rename(target)
            (target / ".complete").write_text(f"{name}@{version} {integrity}\n")
    return package


def ensure_all() -> dict[str, Path]:
    return {name: ensure(name) for name in PACKAGES}


def main() -> int:
    try:
        for name, path in ensure_all().items():
            print(f"{NPM_NAMES.get(name, name)}@{PACKAGES[name][0]}: {path}")
    except CorpusError as e:
        print(f"corpus: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
