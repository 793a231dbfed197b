"""Which variant of a commit ``status`` and ``fetch`` are about.

A commit submitted with several option sets (entries, style, load paths, engine, ...)
has one variant per set, each named by its ID (``CompileOptions.variant()``, as
``status`` prints it). ``--variant ID`` picks one; else the options the current
``scssq.toml`` and flags resolve to (what ``submit`` here would send) select one; with
no entry named by either, nothing is selected and ``status`` judges every variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler_tasks.errors import NotFound
from compiler_tasks.keys import CompileOptions

from . import config as cfg
from .fields import merge
from .queries import Variant, by_variant, pick, with_digest


@dataclass(frozen=True)
class Selection:
    """What the current directory's scssq.toml and the flags ask about."""

    #: The options they resolve to; None when they name no entry.
    wanted: CompileOptions | None
    project: str
    #: Where git resolves a ref: the bundle's src folder, else the current directory.
    checkout: Path
    out: Path
    #: Entries written elsewhere than under ``out`` (``--entry in.scss:out.css``).
    targets: dict[str, Path] = field(default_factory=dict)


def from_flags(cwd: Path, default_engine: str, flags: dict[str, Any]) -> Selection:
    """The selection of ``flags`` over ``cwd``'s scssq.toml; a bad value is a usage
    error, as in submit, except that naming no entry selects nothing and that the
    folders need not exist (a deploy step may fetch before installing a load path)."""
    try:
        conf = cfg.resolve(cwd, flags, default_engine=default_engine, folders=False)
        checkout = conf.src if conf.src.is_dir() else cwd
        targets = {e: conf.target(e) for e, _ in conf.outputs}
        return Selection(conf.options, conf.project, checkout, conf.out, targets)
    except cfg.NoEntries:
        pass
    values = merge(flags, cfg.load_file(cwd))
    src = (cwd / str(values["src"])).resolve()
    checkout = src if src.is_dir() else cwd
    project = cfg.project_name(flags.get("project"), cwd, checkout)
    out = cfg.out_folder(cwd / str(values["out"]))
    return Selection(None, project, checkout, out)


def judge(
    found: list[Variant],
    wanted: CompileOptions | None,
    ident: str | None,
    digest: str | None,
    where: tuple[str, str],
) -> tuple[list[Variant], list[Variant]]:
    """(the variants to show, the ones ``status``'s exit code is about).

    ``--variant`` narrows both to one, ``--digest`` to the sources it names; else the
    ``wanted`` options pick the judged one (NotFound when no variant has them), and
    with nothing wanted every variant is judged. ``where`` is (commit, project)."""
    commit, project = where
    if ident is not None:
        found = [by_variant(found, ident)]
    if digest is not None:
        found = [pick(v, commit, project, digest) for v in with_digest(found, digest)]
    if ident is None and wanted is None:
        return found, found
    chosen = wanted.variant() if wanted is not None else None
    judged = found if ident is not None else [v for v in found if v.variant == chosen]
    for v in judged:
        v.selected = True
    return found, judged


def unselected(commit: str, found: list[Variant], wanted: CompileOptions) -> NotFound:
    """The error when the current options select a variant never submitted."""
    return NotFound(
        f"commit {commit[:12]} has no variant with the options scssq.toml and the flags "
        f"select (variant {wanted.variant()}: entries {','.join(wanted.entries)}, style "
        f"{wanted.style}); its variants: {', '.join(v.variant for v in found)}. Submit it "
        "with these options, or pass --variant ID to ask about one of those"
    )
