"""The ``scssq submit`` options a ``sass`` CLI user expects, and what they do on the
client: source map embedding (``--embed-sources``, ``--embed-source-map``, which change
the compile), ``--error-css`` and ``-q/--quiet`` (which do not), and a stylesheet
passed where the commit goes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from compiler_tasks.errors import CompileError, ScssqError, UsageError

from .config import SubmitConfig
from .errorcss import error_css
from .outputs import write_output

#: What the ``sass`` CLI prints with ``-h`` as well as ``--help``.
CONTEXT = {"help_option_names": ["-h", "--help"]}
_HEX_RE = re.compile(r"\A[0-9A-Fa-f]{7,64}\Z")
_STYLESHEET = (".scss", ".sass", ".css")


#: Source map flags of Dart Sass (they change the CSS, so they join the compile key).
MAP_OPTIONS = [
    click.option(
        "--embed-sources/--no-embed-sources",
        default=None,
        help="Embed each source's text in the source map [scssq.toml embed_sources, else on].",
    ),
    click.option(
        "--embed-source-map/--no-embed-source-map",
        default=None,
        help="Put the source map in the CSS as a data: URL; implies a source map "
        "[scssq.toml embed_source_map, else off].",
    ),
]


def submit_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Client-side flags of the sass CLI: what is printed or written on an error."""
    options = [
        click.option(
            "--error-css/--no-error-css",
            default=None,
            help="On a compile error, write a CSS file showing it where the CSS goes "
            "[scssq.toml error_css, else off].",
        ),
        click.option(
            "-q",
            "--quiet/--no-quiet",
            default=None,
            help="Print no warnings of the stylesheets [scssq.toml quiet, else off].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def refuse_stylesheet(value: str | None) -> None:
    """A HASH that looks like a path is a stylesheet given where the commit goes."""
    if value is None or _HEX_RE.match(value.strip()):
        return
    if "/" in value or value.lower().endswith(_STYLESHEET) or _is_file(value):
        shown = value if len(value) <= 200 else value[:200] + "..."
        raise UsageError(
            f"{shown!r} looks like a stylesheet; pass it with --entry {shown} "
            "(the argument is the commit, HEAD when omitted)"
        )


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except OSError:  # a name too long for the filesystem is no file here
        return False


def quieted(conf: SubmitConfig, thing: Any) -> Any:
    """``thing`` (a result or an error) without its warnings when ``--quiet``."""
    if conf.quiet and getattr(thing, "warnings", None):
        thing.warnings = ""
    return thing


def write_error_css(conf: SubmitConfig, exc: Exception) -> None:
    """``--error-css``: write the compile error as a stylesheet where each entry's CSS goes
    (the submit failed as a whole: no entry's CSS was delivered)."""
    if not conf.error_css or not isinstance(exc, CompileError):
        return
    css = error_css(str(exc))
    for target in conf.targets.values():
        try:
            write_output(target, css)
        except ScssqError as e:  # the compile error is what the exit code reports
            click.echo(f"scssq: could not write the error CSS: {e}", err=True)
            return
        click.echo(f"scssq: wrote the error to {target} (--error-css)", err=True)
