"""Collecting a bundle: from a directory on the client, from an archive on the worker.

The client collects a bundle from a directory (what goes in, what stays out)
and computes the content digest; :mod:`.archive` packs it as a deterministic
tar.gz for transport. The worker reads an archive back (:func:`read_archive`:
regular files with plain relative names only, bounded count and size, no
duplicates), checks the digest, and writes the files into a fresh per-task
directory (:func:`write_tree`). The values themselves are in :mod:`.model`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BundleError, InvalidInput
from ..keys import validate_relpath
from .model import Bundle, Source
from .rule import SKIPPED_DIRS, Names, Rule
from .sources import read_source

SOURCE_SUFFIXES = (".scss", ".sass")
#: (real path, real paths of its ancestors) of a folder: a link back up is a cycle.
_Dir = tuple[str, frozenset[str]]


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _walk(
    root: str, start: str, start_rel: str, seen: frozenset[str], excluded: list[str], rule: Rule
) -> tuple[dict[str, str], dict[str, _Dir]]:
    """Relative path -> real path of candidate files under ``start``, and the folders the
    rule defers (:meth:`Rule.deferred`); links followed while inside ``root`` (real)."""
    found: dict[str, str] = {}
    deferred: dict[str, _Dir] = {}
    stack: list[tuple[str, str, frozenset[str]]] = [(start, start_rel, seen)]
    while stack:
        real_dir, rel_dir, ancestors = stack.pop()
        if real_dir in ancestors:
            continue
        ancestors = ancestors | {real_dir}
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as e:
            raise BundleError(f"cannot read directory {rel_dir or '.'!r} under --src: {e}") from e
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_symlink():  # resolved, then held to the root like any path
                real = os.path.realpath(entry.path)
                is_dir, is_file = os.path.isdir(real), os.path.isfile(real)
            else:  # inside a real directory: already real (no lstat per path component)
                real = os.path.join(real_dir, entry.name)
                is_dir = entry.is_dir(follow_symlinks=False)
                is_file = entry.is_file(follow_symlinks=False)
            if not _inside(real, root) or any(_inside(real, ex) for ex in excluded):
                continue
            if is_dir:
                if entry.name in SKIPPED_DIRS or rule.excluded_by(rel):
                    continue
                if rule.deferred(rel, entry.name):
                    deferred[rel] = (real, ancestors)
                else:
                    stack.append((real, rel, ancestors))
            elif (
                is_file
                and entry.name.endswith((*SOURCE_SUFFIXES, ".css"))
                and not rule.excluded_by(rel)
            ):
                found[rel] = real
    return found, deferred


def collect(
    src: Path, *, exclude: list[Path], max_bytes: int, max_files: int, rule: Rule | None = None
) -> Bundle:
    """Bundle the files under ``src`` that :mod:`.rule` keeps.

    ``exclude`` holds directories to leave out (the output folder). Files are
    read once; limits are checked as they are read.
    """
    if not src.is_dir():
        raise BundleError(f"--src {str(src)!r} is not a directory; pass the bundle root")
    rule = rule or Rule()
    rule.check_entries()
    root = os.path.realpath(src)
    excluded = [os.path.realpath(path) for path in exclude]
    pending, deferred = _walk(root, root, "", frozenset(), excluded, rule)
    sources: dict[str, Source] = {}
    css: dict[str, str] = {}
    names = Names()
    total = 0
    while pending:
        for rel, real in pending.items():
            if rel.endswith(".css"):
                css[rel] = real
            else:
                total += _add(sources, rel, real, total, max_bytes, max_files)
                names.add(sources[rel].data)
        pending = {}
        for rel in [rel for rel in deferred if names.folder(rel.rsplit("/", 1)[-1])]:
            real, ancestors = deferred.pop(rel)
            found, more = _walk(root, real, rel, ancestors, excluded, rule)
            pending.update(found)
            deferred.update(more)
    for rel, real in sorted(css.items()):
        if names.css(rel):
            total += _add(sources, rel, real, total, max_bytes, max_files)
    if not sources:
        raise BundleError(f"--src {str(src)!r} holds no .scss or .sass file")
    return Bundle.from_sources(sources)


def _add(
    sources: dict[str, Source],
    rel: str,
    real: str,
    total: int,
    max_bytes: int,
    max_files: int,
) -> int:
    try:
        validate_relpath(rel, "bundled file")
    except InvalidInput as e:
        raise BundleError(f"{e}; rename it or move it out of --src") from None
    if len(sources) >= max_files:
        raise BundleError(
            f"the bundle has more than {max_files} files; narrow --src (SCSSQ_MAX_BUNDLE_FILES)"
        )
    source = read_source(real, max_bytes - total)
    if total + len(source.data) > max_bytes:
        raise BundleError(
            f"the bundle exceeds {max_bytes} bytes at {rel!r}; narrow --src "
            "(SCSSQ_MAX_BUNDLE_BYTES)"
        )
    sources[rel] = source
    return len(source.data)


def read_archive(data: bytes, *, max_bytes: int, max_files: int) -> Bundle:
    """The bundle a tar.gz holds, refusing anything but plain relative regular files
    within the limits (see :func:`archive.unpack`)."""
    from . import archive

    return Bundle.from_files(archive.unpack(data, max_bytes=max_bytes, max_files=max_files))


def write_tree(bundle: Bundle, root: Path) -> None:
    """Write the bundle's files under the empty directory ``root`` (never outside it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    made = {""}  # directories created so far, relative to root
    base = str(root)
    for rel in sorted(bundle.files):
        validate_relpath(rel, "bundled file")
        parent = rel.rpartition("/")[0]
        if parent not in made:
            os.makedirs(os.path.join(base, parent), exist_ok=True)
            made.add(parent)
        fd = os.open(os.path.join(base, rel), flags, 0o644)
        try:
            view = memoryview(bundle.files[rel])
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
