"""Commits as users name them, and variants they can tell apart: real fleet, real git.

``submit``, ``status`` and ``fetch`` take what ``git rev-parse`` resolves in a checkout
(made here with ``git init``, commits and a tag) and default to HEAD; a full hash needs
no checkout. A commit submitted with several option sets shows each variant's ID and
the options that differ; ``--variant`` picks one, and ``status``'s exit code follows the
variant the current scssq.toml selects.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.fleet import Fleet
from tests.test_fleet import make_src, ok, submit_args

pytestmark = pytest.mark.integration

GIT_ID = ["-c", "user.name=scssq tests", "-c", "user.email=tests@example.invalid"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_ID, *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def make_repo(tmp_path: Path) -> Path:
    """A checkout with two commits (the first tagged v1) and ``out/`` ignored by nobody."""
    repo = make_src(tmp_path, {"main.scss": ".a { color: red; }\n"}, "repo")
    git(repo, "init", "-q", "-b", "trunk")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "red")
    git(repo, "tag", "v1")
    (repo / "main.scss").write_text(".a { color: blue; }\n")
    git(repo, "commit", "-q", "-am", "blue")
    return repo


def test_refs_resolve_in_the_checkout_and_head_is_the_default(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    repo = make_repo(tmp_path)
    head, v1 = git(repo, "rev-parse", "HEAD"), git(repo, "rev-parse", "v1")
    args = ["--src", ".", "--entry", "main.scss", "--project", "demo"]

    first = ok(fleet.scssq("submit", *args, "--json", cwd=repo), fleet)
    assert json.loads(first.stdout)["commit"] == head
    assert "WARNING" not in first.stderr, first.stderr
    again = ok(fleet.scssq("submit", *args, cwd=repo), fleet)  # out/ is new: not a change
    assert "WARNING" not in again.stderr, again.stderr
    git(repo, "checkout", "-q", "v1")
    tagged = ok(fleet.scssq("submit", "v1", *args, cwd=repo), fleet)  # HEAD is v1 now
    assert "WARNING" not in tagged.stderr, tagged.stderr
    git(repo, "checkout", "-q", "trunk")

    for ref in ("HEAD", head[:7], "trunk", None):
        shown = fleet.scssq("status", *([ref] if ref else []), "--project", "demo", cwd=repo)
        assert shown.returncode == 0, (ref, shown.stdout, shown.stderr)
    fetched = fleet.scssq("fetch", "v1", "--project", "demo", "--out", "../f", cwd=repo)
    assert ok(fetched, fleet).stdout.startswith("fetched")
    assert "red" in (tmp_path / "f" / "main.css").read_text()

    # A full hash needs no checkout; anything else does, and says so.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert fleet.scssq("status", v1, "--project", "demo", cwd=elsewhere).returncode == 0
    short = fleet.scssq("status", v1[:7], "--project", "demo", cwd=elsewhere)
    assert short.returncode == 2 and "not one" in short.stderr and "full" in short.stderr
    unknown = fleet.scssq("status", "v9", "--project", "demo", cwd=repo)
    assert unknown.returncode == 2 and "git knows no commit 'v9'" in unknown.stderr


def test_a_dirty_tree_submitted_under_head_warns(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    repo = make_repo(tmp_path)
    (repo / "main.scss").write_text(".a { color: green; }\n")
    (repo / "_new.scss").write_text("$x: 1;\n")
    (repo / "notes.txt").write_text("not a stylesheet\n")
    args = ["--src", ".", "--entry", "main.scss", "--project", "demo"]
    dirty = ok(fleet.scssq("submit", *args, cwd=repo), fleet)
    assert "WARNING: the working tree differs from HEAD" in dirty.stderr
    assert "2 stylesheet(s)" in dirty.stderr, dirty.stderr
    assert "M main.scss" in dirty.stderr and "?? _new.scss" in dirty.stderr
    assert "notes.txt" not in dirty.stderr
    # A ref that is not HEAD: the working tree is not its sources either.
    tagged = ok(fleet.scssq("submit", "v1", *args, "--out", "../o", cwd=repo), fleet)
    assert "WARNING: v1 (" in tagged.stderr and "is not the checkout's HEAD" in tagged.stderr


def _variant_site(tmp_path: Path) -> Path:
    return make_src(
        tmp_path,
        {
            "main.scss": '@import "colors";\n.a { color: $c; }\n',
            "vendor/_colors.scss": "$c: red;\n",
            "lib/_other.scss": "$d: 1;\n",
        },
    )


def _status(fleet: Fleet, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return fleet.scssq("status", "a" * 40, "--project", "demo", *args, cwd=cwd)


def test_variants_show_what_differs_and_the_selected_one_decides(
    make_fleet, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1)
    src = _variant_site(tmp_path)
    wrong = fleet.scssq(
        "submit", "a" * 40, *submit_args(src, tmp_path / "o1", "--load-path", "lib"), cwd=tmp_path
    )
    assert wrong.returncode == 1, wrong.stderr  # a mistaken load path: colors not found
    right = submit_args(src, tmp_path / "o2", "--load-path", "vendor", "--style", "compressed")
    ok(fleet.scssq("submit", "a" * 40, *right, cwd=tmp_path), fleet)

    # Nothing selects a variant here: every variant counts, as before.
    every = _status(fleet, tmp_path)
    assert every.returncode == 1, every.stdout
    assert "load_paths lib" in every.stdout and "load_paths vendor" in every.stdout
    assert "style compressed" in every.stdout and "style expanded" in every.stdout
    found = {
        v["options"]["load_paths"][0]: v
        for v in json.loads(_status(fleet, tmp_path, "--json").stdout)
    }
    good, bad = found["vendor"]["variant"], found["lib"]["variant"]
    assert good in every.stdout and bad in every.stdout

    # The scssq.toml of the checkout selects the right variant: status follows it.
    (src / "scssq.toml").write_text(
        'entries = ["main.scss"]\nload_paths = ["vendor"]\nstyle = "compressed"\n'
    )
    selected = _status(fleet, src)
    assert selected.returncode == 0, selected.stdout + selected.stderr
    assert f"variant {good}  (selected)" in selected.stdout
    assert _status(fleet, src, "--style", "expanded").returncode == 4  # never submitted
    deploy = tmp_path / "deploy"  # a deploy step: its scssq.toml, no sources checked out
    deploy.mkdir()
    (deploy / "scssq.toml").write_text((src / "scssq.toml").read_text() + 'src = "absent"\n')
    assert _status(fleet, deploy).returncode == 0
    assert _status(fleet, tmp_path, "--variant", bad[:8]).returncode == 1
    picked = _status(fleet, tmp_path, "--variant", good)
    assert picked.returncode == 0 and bad not in picked.stdout
    nope = _status(fleet, tmp_path, "--variant", "ffff")
    assert nope.returncode == 2 and "--variant ffff names no variant" in nope.stderr

    out = tmp_path / "fetched"
    fetched = fleet.scssq(
        "fetch", "a" * 40, "--project", "demo", "--variant", good, "--out", str(out), cwd=tmp_path
    )
    assert ok(fetched, fleet).stdout.startswith("fetched")
    assert (out / "main.css").read_text().startswith(".a{color:red}")
    ambiguous = fleet.scssq("fetch", "a" * 40, "--project", "demo", "--out", str(out), cwd=tmp_path)
    assert ambiguous.returncode == 2 and "--variant" in ambiguous.stderr
    assert "load_paths lib" in ambiguous.stderr and "load_paths vendor" in ambiguous.stderr
    # Where scssq.toml selects a variant, fetch serves that one.
    chosen = fleet.scssq("fetch", "a" * 40, "--project", "demo", "--out", "../o3", cwd=src)
    assert ok(chosen, fleet).stdout.startswith("fetched")
    assert (tmp_path / "o3" / "main.css").read_text().startswith(".a{color:red}")
