"""What the ``scssq`` commands print: results, variants (and the options that tell
them apart), progress and failures (with the documented exit code, and as one JSON
object with ``--json``)."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from compiler_tasks.errors import EXIT_COMPILE, ScssqError, UsageError, exit_code_for
from compiler_tasks.keys import CompileOptions


def fail(exc: BaseException, as_json: bool, extra: dict[str, Any] | None = None) -> NoReturn:
    code = exit_code_for(exc)
    message = str(exc) if isinstance(exc, ScssqError) else f"unexpected {type(exc).__name__}: {exc}"
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": False,
                    "exit_code": code,
                    **(extra or {}),
                    "error": {"type": type(exc).__name__, "message": message},
                }
            )
        )
    label = {EXIT_COMPILE: "compile error"}.get(code, "error")
    click.echo(f"scssq: {label}: {message}", err=True)
    sys.exit(code)


def human_size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def fail_with_warnings(exc: ScssqError, as_json: bool, extra: dict[str, Any]) -> NoReturn:
    warnings = getattr(exc, "warnings", "")
    if warnings:
        click.echo(warnings.rstrip("\n"), err=True)
    fail(exc, as_json, extra)


def progress(message: str) -> None:
    click.echo(f"scssq: {message}", err=True)


def print_submit(result: Any, as_json: bool) -> None:
    if result.warnings:
        click.echo(result.warnings.rstrip("\n"), err=True)
    if result.conflict:
        click.echo(f"scssq: WARNING: {result.conflict}", err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "project": result.project,
                    "commit": result.commit,
                    "key": result.key,
                    "digest": result.digest,
                    "outcome": result.outcome,
                    "seconds": round(result.seconds, 3),
                    "conflict": result.conflict,
                    "warnings": result.warnings,
                    "entries": [
                        {
                            "entry": e.entry,
                            "css": str(e.css),
                            "map": str(e.map) if e.map else None,
                            "size": e.size,
                            "sha256": e.sha256,
                        }
                        for e in result.entries
                    ],
                }
            )
        )
        return
    if result.outcome == "queued":
        click.echo(f"queued {result.key[:12]} for commit {result.commit[:12]}")
    for e in result.entries:
        click.echo(
            f"{result.outcome:<8} {e.entry} -> {e.css} {human_size(e.size)} {result.seconds:.2f}s"
        )


#: Options shown for every variant; the others only where the variants differ.
_ALWAYS = ("entries", "style")


def differing(found: list[Any]) -> list[str]:
    """The options to show: entries and style, and every option whose value is not the
    same in every variant (load paths, engine, source map, ...)."""
    names = sorted({name for v in found for name in v.options} - set(_ALWAYS))
    return [*_ALWAYS, *(n for n in names if len({_option(v, n) for v in found}) > 1)]


def _option(variant: Any, name: str) -> str:
    """Option ``name`` of ``variant`` as shown; an option a submit left out (the
    Dart Sass ones, when unset) shows its default."""
    try:
        value = getattr(CompileOptions.from_dict(variant.options), name)
    except (UsageError, AttributeError):
        value = variant.options.get(name)
    if isinstance(value, list | tuple):
        return ",".join(str(x) for x in value) or "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(variant: Any, names: list[str]) -> str:
    """``variant``'s options ``names``, as ``name value`` pairs (lists comma-joined)."""
    return " ".join(f"{name} {_option(variant, name)}" for name in names)


def print_variants(found: list[Any]) -> None:
    """Each variant: state, key, digest, its ID for ``--variant``, then its entries,
    style and every option that differs between the variants; the one the current
    scssq.toml/flags select is marked."""
    names = differing(found)
    for v in found:
        mark = "  (selected)" if v.selected and len(found) > 1 else ""
        click.echo(
            f"{v.state:<9} key {v.key[:12]} digest {v.digest[:12]} variant {v.variant}{mark}"
        )
        click.echo(f"          {describe(v, names)}")
        if v.message:
            click.echo(f"          {v.message}")
        for c in v.contenders:
            click.echo(
                f"          contested by digest {c.digest[:12]} (key {c.key[:12]}, {c.state})"
            )
