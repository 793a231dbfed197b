"""The client's options, each declared once: its flags, its ``scssq.toml`` key (the same
name), type, default and help.

:data:`OPTIONS` drives the click options of ``submit``, ``status`` and ``fetch``
(:func:`click_options`), the check of each ``scssq.toml`` value (:attr:`Kind.check`),
the merge "flag, else ``scssq.toml``, else default" (:func:`merge`) and the table in
``docs/configuration.md`` (:func:`render_docs`; ``python -m cli.fields`` rewrites it, a
test fails while it disagrees). The ``SCSSQ_*`` variables an option names are read in
:mod:`cli.config`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import click

from compiler_tasks.errors import InvalidInput
from compiler_tasks.keys import STYLES, validate_project
from compiler_tasks.settings import DEFAULT_SUBMIT_TIMEOUT, ENGINES


@dataclass(frozen=True)
class Kind:
    """What a value must be: as an error and the docs say it, its check, its click type."""

    accepts: str
    check: Callable[[Any], bool]
    type: click.ParamType | None = None


def _project(v: Any) -> bool:
    try:
        return isinstance(v, str) and bool(validate_project(v))
    except InvalidInput:
        return False


def choice(choices: tuple[str, ...]) -> Kind:
    listed = " or ".join(f'"{c}"' for c in choices)
    return Kind(f"one of {listed}", lambda v: v in choices, click.Choice(choices))


def _strings(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


TEXT = Kind("a string (quoted)", lambda v: isinstance(v, str))
#: A string or a list of them; repeatable as a flag.
LIST = Kind("a list of strings", _strings)
BOOL = Kind("a boolean (true or false, unquoted)", lambda v: isinstance(v, bool))
PROJECT = Kind("a project name (a string of 1-100 letters, digits, '.', '_' or '-')", _project)
#: As ``--timeout`` and SCSSQ_SUBMIT_TIMEOUT: at least 0.1 s.
SECONDS = Kind(
    "a number of seconds, at least 0.1",
    lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v >= 0.1,
    click.FloatRange(min=0.1),
)


@dataclass(frozen=True)
class Option:
    """One option: ``--flag`` (a BOOL also ``--no-flag``) and ``scssq.toml``'s ``name``."""

    name: str
    flags: tuple[str, ...]
    kind: Kind
    default: Any
    #: A value for the fix of a wrong one: ``write e.g. name = example``.
    example: Any
    help: str
    #: The default as help shows it, when not the value itself.
    shown: str = ""
    #: The client variable that wins over ``scssq.toml`` (read in cli.config).
    env: str = ""
    metavar: str | None = None
    submit_only: bool = False

    @property
    def default_text(self) -> str:
        if self.shown or isinstance(self.default, bool):
            return self.shown or ("on" if self.default else "off")
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default or "none")

    @property
    def full_help(self) -> str:
        """The help with where the value comes from when no flag gives it."""
        env = f"{self.env}, else " if self.env else ""
        return f"{self.help} [{env}scssq.toml {self.name}, else {self.default_text}]."


# One row per option: name (the scssq.toml key), flags, kind, default, example, help.
# fmt: off
OPTIONS: tuple[Option, ...] = (
    Option("src", ("--src",), TEXT, ".", "scss", "Bundle root"),
    Option("entries", ("--entry",), LIST, (), ["scss/main.scss"],
           "Entry stylesheet relative to --src (repeatable); ENTRY:OUT.css writes its CSS to "
           "OUT.css, relative to the working directory, instead of under --out"),
    Option("load_paths", ("-I", "--load-path"), LIST, (), ["vendor"],
           "Load path relative to --src (repeatable)"),
    Option("style", ("-s", "--style"), choice(STYLES), "expanded", "compressed", "Output style"),
    Option("source_map", ("--source-map",), BOOL, False, False,
           "Write a source map beside each CSS file"),
    Option("embed_sources", ("--embed-sources",), BOOL, True, False,
           "Embed each source's text in the source map"),
    Option("embed_source_map", ("--embed-source-map",), BOOL, False, False,
           "Put the source map in the CSS as a data: URL; implies a source map"),
    Option("engine", ("--engine",), choice(ENGINES), "libsass", "dart-sass",
           "Sass engine; dart-sass for @use/@forward/sass:math",
           shown="SCSSQ_ENGINE, else libsass"),
    Option("silence_deprecations", ("--silence-deprecation",), LIST, (), ["import"],
           "dart-sass: silence this deprecation's warnings, e.g. import (repeatable)",
           metavar="ID"),
    Option("quiet_deps", ("--quiet-deps",), BOOL, False, False,
           "dart-sass: no warnings from stylesheets found through load paths or pkg:"),
    Option("project", ("--project",), PROJECT, None, "my-site", "Project name",
           shown="the git top-level's name", env="SCSSQ_PROJECT"),
    Option("out", ("--out",), TEXT, "out", "dist", "Output folder"),
    Option("exclude", ("--exclude",), LIST, (), ["tests/fixtures"],
           "Leave files matching GLOB (relative to --src) out of the bundle (repeatable)",
           metavar="GLOB"),
    # submit's alone: status and fetch take none of these
    Option("timeout", ("--timeout",), SECONDS, DEFAULT_SUBMIT_TIMEOUT, 600,
           "Seconds for queueing, compiling and downloading together",
           env="SCSSQ_SUBMIT_TIMEOUT", submit_only=True),
    Option("error_css", ("--error-css",), BOOL, False, False,
           "On a compile error, write a CSS file showing it where the CSS goes",
           submit_only=True),
    Option("quiet", ("-q", "--quiet"), BOOL, False, False,
           "Print no warnings of the stylesheets", submit_only=True),
)
# fmt: on
BY_NAME = {o.name: o for o in OPTIONS}


def click_options(*, submit: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click options of the table, in its order (``submit``: with its own ones too).
    Each defaults to None (a list to ()): not given, so ``scssq.toml`` or the default."""
    options = [
        click.option(
            *o.flags[:-1],
            f"{o.flags[-1]}/--no-{o.flags[-1][2:]}" if o.kind is BOOL else o.flags[-1],
            o.name,
            type=o.kind.type,
            multiple=o.kind is LIST,
            default=None,
            metavar=o.metavar,
            help=o.full_help,
        )
        for o in OPTIONS
        if submit or not o.submit_only
    ]
    return lambda fn: reduce(lambda f, option: option(f), reversed(options), fn)


def merge(flags: Mapping[str, Any], data: Mapping[str, Any], **defaults: Any) -> dict[str, Any]:
    """Each option's value: its flag when given (neither None nor ()), else ``scssq.toml``'s
    (``data``, checked), else ``defaults``' or its row's default. A LIST: strings."""
    values = {o.name: data.get(o.name, defaults.get(o.name, o.default)) for o in OPTIONS}
    values.update((k, v) for k, v in flags.items() if v not in (None, ()))
    return {
        k: [v] if BY_NAME[k].kind is LIST and isinstance(v, str) else v for k, v in values.items()
    }


def origin(name: str, flags: Mapping[str, Any]) -> str:
    """Where ``name``'s value came from, for a message: its flag, else scssq.toml's key."""
    return BY_NAME[name].flags[-1] if flags.get(name) not in (None, ()) else f"scssq.toml: {name}"


BEGIN = "<!-- BEGIN generated by `python -m cli.fields` from cli/fields.py -->"
END = "<!-- END generated -->"


def markdown() -> str:
    """The generated block of ``docs/configuration.md``: one row per option."""
    rows = ["| `scssq.toml` | flag | type | default | what it does |", "|---|---|---|---|---|"]
    for o in OPTIONS:
        flag = ", ".join(f"`{f}`" for f in o.flags) + (f" `{o.metavar}`" if o.metavar else "")
        env = f"`{o.env}` (wins over the key), else " if o.env else ""
        key = f"`{o.name} = {json.dumps(o.example)}`"
        rows.append(f"| {key} | {flag} | {o.kind.accepts} | {env}{o.default_text} | {o.help}. |")
    return "\n".join([BEGIN, "", *rows, "", END])


def render_docs(text: str) -> str:
    """``docs/configuration.md``'s text with its options block rewritten."""
    head, begin, rest = text.partition(BEGIN + "\n")
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"no block {BEGIN!r} ... {END!r} to rewrite")
    return head + markdown() + tail


if __name__ == "__main__":
    DOCS = Path("docs/configuration.md")
    DOCS.write_text(render_docs(DOCS.read_text()))
