"""Which variant of a commit ``status`` and ``fetch`` are about, and why they refuse it.

A commit submitted with several option sets (entries, style, load paths, engine, ...)
has one variant per set, each named by its ID (``CompileOptions.variant()``, as
``status`` prints it). ``--variant ID`` picks one; else the options the current
``scssq.toml`` and flags resolve to (what ``submit`` here would send) select one; with
no entry named by either, nothing is selected and ``status`` judges every variant.
``--digest`` keeps the variants submitted with those sources, and serves them even
when the commit is contested; ``fetch`` needs exactly one variant, uncontested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compiler_tasks.errors import Contested, NotFound, ScssqError, UsageError
from compiler_tasks.keys import CompileOptions

from . import config as cfg
from .fields import merge
from .printing import describe, differing
from .queries import Variant

_DIGEST_RE = re.compile(r"^[0-9a-f]{12,64}\Z")
_VARIANT_RE = re.compile(r"^[0-9a-f]{4,16}\Z")


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
    data = cfg.load_file(cwd)
    values = merge(flags, data)
    src = (cwd / str(values["src"])).resolve()
    checkout = src if src.is_dir() else cwd
    project = cfg.project_name(flags.get("project"), data, checkout)
    out = cfg.out_folder(cwd / str(values["out"]))
    return Selection(None, project, checkout, out)


def select(
    found: list[Variant],
    wanted: CompileOptions | None,
    ident: str | None,
    digest: str | None,
    where: tuple[str, str],
) -> tuple[list[Variant], list[Variant]]:
    """(the variants to show, the selected ones: what ``status``'s exit code is about).

    ``--variant`` (``ident``) narrows both to one, ``--digest`` to the sources it names
    (each variant then served from them); else the ``wanted`` options select one (none
    when no variant has them), and with nothing wanted every variant is judged.
    ``where`` is (commit, project)."""
    if ident is not None:
        found = [_by_variant(found, ident)]
    if digest is not None:
        found = [_serving(v, digest, where) for v in _with_digest(found, digest)]
    if ident is None and wanted is None:
        return found, found
    for v in found:
        v.selected = ident is not None or (wanted is not None and v.variant == wanted.variant())
    return found, [v for v in found if v.selected]


def _by_variant(found: list[Variant], ident: str) -> Variant:
    """The variant whose ID (as ``status`` prints it) is, or starts with, ``ident``."""
    norm = ident.strip().lower()
    ids = ", ".join(v.variant for v in found)
    if not _VARIANT_RE.match(norm):
        raise UsageError(
            f"--variant {ident!r} is not 4-16 hexadecimal digits; pass a variant ID that "
            f"`scssq status` prints (this commit's: {ids})"
        )
    having = [v for v in found if v.variant.startswith(norm)]
    if len(having) != 1:
        problem = "names no variant" if not having else "names several variants"
        raise UsageError(f"--variant {ident} {problem} of the commit; pass one of {ids}")
    return having[0]


def _with_digest(found: list[Variant], digest: str) -> list[Variant]:
    """The variants one of whose digests starts with ``digest`` (``--digest``); none: refused."""
    if not _DIGEST_RE.match(digest):
        raise UsageError(
            f"--digest {digest!r} is not 12-64 lowercase hexadecimal digits; pass a digest "
            "that `scssq submit --json` or `scssq status` printed"
        )
    having = [v for v in found if any(d.startswith(digest) for d in v.digests)]
    if not having:
        known = ", ".join(d for v in found for d in v.digests)
        raise UsageError(
            f"--digest {digest}: the commit was submitted with no such sources (its digests: "
            f"{known}); pass one of them"
        )
    return having


def _serving(found: Variant, digest: str, where: tuple[str, str]) -> Variant:
    """``found`` served from the one of its digests that starts with ``digest``, uncontested."""
    matches = [d for d in found.digests if d.startswith(digest)]
    if len(matches) != 1:
        commit, project = where
        raise UsageError(
            f"--digest {digest} matches {len(matches)} of the digests commit {commit[:12]} of "
            f"project {project!r} was submitted with ({', '.join(found.digests)}); pass one of them"
        )
    later = next((c for c in found.contenders if c.digest == matches[0]), None)
    return replace(found, **(vars(later) if later else {}), contenders=[])


def refusal(
    found: list[Variant],
    judged: list[Variant],
    wanted: CompileOptions | None,
    where: tuple[str, str],
) -> ScssqError | None:
    """Why ``status`` fails whatever the states: the selected variant was never
    submitted (NotFound), or a judged one is contested."""
    commit = where[0]
    if not judged and wanted is not None:
        return NotFound(
            f"commit {commit[:12]} has no variant with the options scssq.toml and the flags "
            f"select (variant {wanted.variant()}: entries {','.join(wanted.entries)}, style "
            f"{wanted.style}); its variants: {', '.join(v.variant for v in found)}. Submit "
            "it with these options, or pass --variant ID to ask about one of those"
        )
    contested = [v for v in judged if v.contenders]
    return _contested(contested, *where) if contested else None


def served(found: list[Variant], judged: list[Variant], where: tuple[str, str]) -> Variant:
    """The one variant ``fetch`` writes: the selected one, else the only one left; refused
    when contested."""
    left = judged or found
    if len(left) > 1:
        names = differing(left)
        listing = "; ".join(f"{v.variant}: {describe(v, names)}" for v in left)
        raise UsageError(
            f"the commit has {len(left)} variants ({listing}); pass --variant ID to pick one "
            "(or the --entry/--style/... flags it was submitted with)"
        )
    if left[0].contenders:
        raise _contested(left, *where)
    return left[0]


def _contested(found: list[Variant], commit: str, project: str) -> Contested:
    """Why ``status``/``fetch`` serve nothing: each variant's digests, and how to pick one."""
    return Contested(
        "; ".join(
            f"commit {commit} of project {project!r} (entries {','.join(v.options['entries'])}) "
            f"is contested: it was submitted with digest {v.digest} first and later with other "
            f"sources, digest {', '.join(v.digests[1:])}; serving neither. Pass --digest with "
            "the digest of the sources you trust (the one your own `scssq submit` printed) to "
            "pick one"
            for v in found
        )
    )
