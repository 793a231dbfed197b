"""The README stays short and every link in the docs leads somewhere in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FIGURES = ROOT / "docs" / "figures"
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")


def links(page: Path) -> list[str]:
    """Every markdown link and image target of ``page``, code left out."""
    return _LINK.findall(_CODE.sub("", _FENCE.sub("", page.read_text())))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes from ``page``'s headings."""
    found = set()
    for title in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_the_readme_stays_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move depth into docs/"
    assert lines[2:6] == [
        "```sh",
        "make demo   # sets up, starts a local fleet (private redis-server, 2 workers, "
        "local store), compiles examples/site",
        "make test   # sets up, then lint, types and the whole test suite on real Redis, "
        "real workers, S3 API on loopback",
        "```",
    ]


def test_the_pages_are_found() -> None:
    names = {p.name for p in PAGES}
    for name in ("architecture.md", "configuration.md", "deploy.md", "operations.md"):
        assert name in names
    for name in ("security.md", "engines.md", "benchmarks.md"):
        assert name in names


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The links of ``page`` that leave ``root`` or lead to no file or heading."""
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            broken.append(f"{target}: links outside the repository")
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(root):
            broken.append(f"{target}: leaves the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    assert broken_links(page) == []


def test_every_figure_is_shown_somewhere() -> None:
    shown = {
        (page.parent / target).resolve()
        for page in PAGES
        for target in links(page)
        if target.endswith(".png")
    }
    unused = sorted(p.name for p in FIGURES.glob("*") if p.resolve() not in shown)
    assert not unused, f"docs/figures/ holds images no page shows: {unused}"


def test_the_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# There\n\n## A part\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](there.md#a-part) [gone](gone.md) [anchor](there.md#nope) "
        "[out](../../shared/ARCHITECTURE.md) [web](https://example.org/) "
        "`[code](in-code.md)`\n```\n[fenced](fenced.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "gone.md: no such file",
        "there.md#nope: no heading #nope in there.md",
        "../../shared/ARCHITECTURE.md: leaves the repository",
        "https://example.org/: links outside the repository",
    ]
