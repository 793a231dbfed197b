"""Commits as users name them: a ref (``HEAD``, a short hash, a tag, a branch) turned
into the full commit hash, and the warning when the working tree a submit bundles is not
that commit (stylesheets changed since ``HEAD``, or a ref that is not ``HEAD``).

A full 40- or 64-digit hash needs no checkout (a CI job may query from elsewhere) and
runs no git. Anything else is what ``git rev-parse --verify <ref>^{commit}`` makes of
it in the checkout (the bundle's ``--src`` folder, else the current directory); each
failure is a usage error (exit 2) naming the ref and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compiler_tasks.errors import UsageError
from compiler_tasks.keys import shown, validate_commit

if TYPE_CHECKING:
    from subprocess import CompletedProcess

_FULL_RE = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})\Z")
_GIT_TIMEOUT = 10.0
#: Changed files named in the dirty-tree warning; the rest are counted.
_SHOWN = 3
#: What a bundle can hold: a change to another file does not change the CSS.
_STYLESHEETS = ("*.scss", "*.sass", "*.css")


@dataclass(frozen=True)
class Commit:
    """A resolved commit: its full hash, and the ref it was named by."""

    hash: str
    #: What the user typed, or ``HEAD`` when they typed nothing.
    ref: str
    #: Resolved by git in this checkout (not given as a full hash).
    from_git: bool


def git(checkout: Path, *args: str) -> CompletedProcess[str]:
    """``git args`` in ``checkout``; OSError when git cannot run (not installed, or past
    its timeout). ``subprocess`` is imported here only: a full hash runs no git."""
    import subprocess

    try:
        return subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, timeout=_GIT_TIMEOUT
        )
    except subprocess.SubprocessError as e:
        raise OSError(str(e)) from e


def resolve(ref: str | None, checkout: Path) -> Commit:
    """The commit ``ref`` names (``HEAD`` when None); UsageError naming the ref and the fix."""
    name = "HEAD" if ref is None else ref.strip()
    if _FULL_RE.match(name):
        return Commit(name.lower(), name, False)
    asked = "no HASH given, and HEAD" if ref is None else f"commit {shown(name)}"
    if not name or name.startswith("-") or any(c.isspace() or ord(c) < 32 for c in name):
        raise UsageError(
            f"commit {shown(name)} is neither a commit hash nor a git ref; pass a hash, "
            "a tag, a branch or HEAD"
        )
    try:
        found = git(checkout, "rev-parse", "--verify", f"{name}^{{commit}}")
    except OSError as e:
        raise UsageError(
            f"{asked} needs git to resolve it, and git cannot run in {checkout} ({e}); "
            "install git, or pass the full commit hash"
        ) from e
    if found.returncode == 0:
        return Commit(validate_commit(found.stdout.strip()), name, True)
    if not _is_checkout(checkout):
        raise UsageError(
            f"{asked} needs a git checkout to resolve it, and {checkout} is not one; run "
            "scssq in the checkout (or pass --src inside it), or pass the full 40-digit "
            "commit hash (`git rev-parse HEAD` there)"
        )
    if "ambiguous" in found.stderr:
        raise UsageError(
            f"commit {shown(name)} is an ambiguous short hash in {checkout}; pass more digits"
        )
    raise UsageError(
        f"git knows no commit {shown(name)} in {checkout}; pass a commit hash, tag or "
        "branch of this checkout (`git log --oneline` lists them), or fetch it first"
    )


def _is_checkout(folder: Path) -> bool:
    try:
        return git(folder, "rev-parse", "--git-dir").returncode == 0
    except OSError:
        return False


def tree_warning(commit: Commit, src: Path, out: Path) -> str | None:
    """Why the CSS of ``src`` may not be ``commit``'s: ``commit`` is not the checkout's
    HEAD, or the stylesheets under ``src`` differ from it. None when neither, or when
    git was not asked (a full hash runs no git: the cache-hit path stays fast)."""
    if not commit.from_git:
        return None
    pathspecs = list(_STYLESHEETS)
    if out.is_relative_to(src) and out != src:
        pathspecs.append(f":(exclude){out.relative_to(src).as_posix()}")
    try:
        if commit.ref != "HEAD":
            head = git(src, "rev-parse", "--verify", "HEAD").stdout.strip()
            if head and head != commit.hash:
                return (
                    f"{commit.ref} ({commit.hash[:12]}) is not the checkout's HEAD "
                    f"({head[:12]}): the CSS is compiled from the working tree under --src "
                    f"but recorded under {commit.ref}; check it out first, or submit HEAD"
                )
        status = git(src, "status", "--porcelain", "-z", "--", *pathspecs)
    except OSError:
        return None
    changed = _changes(status.stdout) if status.returncode == 0 else []
    if not changed:
        return None
    listed = ", ".join(changed[:_SHOWN])
    if len(changed) > _SHOWN:
        listed += f" and {len(changed) - _SHOWN} more"
    return (
        f"the working tree differs from {commit.ref} ({commit.hash[:12]}) in {len(changed)} "
        f"stylesheet(s) under --src ({listed}): the CSS is compiled from these files but "
        "recorded under that commit; commit or stash them for CSS that matches the commit"
    )


def _changes(porcelain: str) -> list[str]:
    """``git status --porcelain -z`` as short ``XY path`` items (``??`` untracked)."""
    items, parts = [], porcelain.split("\0")
    i = 0
    while i < len(parts):
        entry = parts[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            i += 1  # the rename's or copy's source path follows
        items.append(f"{code.strip()} {path}")
    return items
