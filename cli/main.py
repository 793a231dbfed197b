"""The ``scssq`` command: parse, delegate to :mod:`cli.client` and :mod:`cli.queries`, print.

Exit codes (all commands):
  0  ok
  1  compile error: the sources are wrong (message is ``path:line:col: message``)
  2  usage or configuration error (bad flag, scssq.toml, SCSSQ_* variable, hash)
  3  infrastructure error or timeout (Redis, store, engine crash, no worker);
     an unexpected exception is a 3 too
  4  ``status``/``fetch`` only: no finished result for that commit yet
  5  ``status``/``fetch`` only: the commit is contested (submitted with other
     sources too); ``--digest`` picks the sources to serve
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from compiler_tasks.errors import (
    EXIT_COMPILE,
    EXIT_INFRA,
    EXIT_NOT_FOUND,
    EXIT_OK,
    InfrastructureError,
    ScssqError,
)
from compiler_tasks.settings import Settings

from . import config as cfg
from . import printing, refs
from .fields import click_options
from .gc import gc
from .options import CONTEXT, quieted, refuse_stylesheet, write_error_css

_COMMIT_ARG = "[COMMIT]"


def _settings() -> Settings:
    return Settings.from_env()


def _run(as_json: bool, fn: Callable[[], int]) -> NoReturn:
    try:
        code = fn()
    except click.ClickException:
        raise
    except Exception as e:
        printing.fail(e, as_json)
    sys.exit(code)


_DIGEST_HELP = (
    "Serve the sources of this digest (12+ hex digits of it) when the commit is contested "
    "(submitted with other sources too)."
)
_VARIANT_HELP = "The variant ID `scssq status` prints (4+ of its digits): picks that variant."


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="scssq")
def main() -> None:
    """scssq: compile SCSS once for the whole CI fleet."""


@main.command()
@click.argument("hash_", metavar=_COMMIT_ARG, required=False)
@click_options(submit=True)
@click.option("--no-wait", is_flag=True, help="Enqueue and exit without waiting.")
@click.option(
    "--fallback",
    type=click.Choice(["none", "local"]),
    help="local: compile on this machine when the fleet is unreachable or times out "
    "[SCSSQ_FALLBACK, else none].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, on failure too.")
def submit(
    hash_: str | None,
    timeout: float | None,
    no_wait: bool,
    fallback: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Compile the bundle of COMMIT [HEAD] through the fleet.

    COMMIT is a full commit hash, or anything `git rev-parse` resolves in the
    checkout of --src (HEAD, a short hash, a tag, a branch). It warns when the
    working tree is not that commit (stylesheets changed since HEAD, or a ref
    other than HEAD): the CSS is of the working tree.

    Prints one line per entry: compiled (this request ran the engine), shared
    (it waited for another request's compile) or cached (the result existed).
    Exit codes: 0 ok, 1 compile error, 2 usage, 3 infrastructure or timeout.
    """
    from compiler_tasks.observability.sentry import traced_submit  # Sentry only with SENTRY_DSN

    def run() -> int:
        refuse_stylesheet(hash_)
        settings = _settings()
        conf = cfg.resolve(Path.cwd(), flags, default_engine=settings.engine)
        commit = _submitted_commit(hash_, conf)
        limit = cfg.submit_timeout(timeout, Path.cwd())
        mode = fallback or cfg.env_value("SCSSQ_FALLBACK") or "none"
        progress = printing.progress if cfg.is_tty() else None
        try:
            result = traced_submit(_submit_once, settings)(
                settings,
                conf,
                commit,
                timeout=limit,
                wait=not no_wait,
                progress=progress,
                warn=printing.progress,
            )
        except InfrastructureError as e:
            if mode != "local" or no_wait:
                printing.fail(e, as_json, {"commit": commit, "project": conf.project})
            result = _local(settings, conf, commit, e, as_json)
        except ScssqError as e:
            write_error_css(conf, e)
            printing.fail_with_warnings(
                quieted(conf, e), as_json, {"commit": commit, "project": conf.project}
            )
        printing.print_submit(quieted(conf, result), as_json)
        return EXIT_OK

    _run(as_json, run)


def _submit_once(settings: Settings, conf: cfg.SubmitConfig, commit: str, **kw: Any) -> Any:
    """One submit on a client of its own, closed after."""
    from .client import Client
    from .client import submit as do_submit

    client = Client(settings)
    try:
        return do_submit(client, conf, commit, **kw)
    finally:
        client.close()


def _submitted_commit(ref: str | None, conf: cfg.SubmitConfig) -> str:
    """The commit ``ref`` names in the checkout of --src; a warning on stderr when the
    working tree is not that commit."""
    named = refs.resolve(ref, conf.src)
    mismatch = refs.tree_warning(named, conf.src, conf.out)
    if mismatch:
        printing.progress(f"WARNING: {mismatch}")
    return named.hash


def _local(
    settings: Settings, conf: cfg.SubmitConfig, commit: str, cause: Exception, as_json: bool
) -> Any:
    """--fallback local: say why, then compile here and exit as that compile does."""
    from .local import compile_locally

    click.echo(f"scssq: the fleet failed ({cause}); compiling locally (--fallback local)", err=True)
    try:
        return compile_locally(settings, conf, commit)
    except ScssqError as e:
        write_error_css(conf, e)
        extra = {"commit": commit, "project": conf.project}
        printing.fail_with_warnings(quieted(conf, e), as_json, extra)


@main.command()
@click.argument("hash_", metavar=_COMMIT_ARG, required=False)
@click_options()
@click.option("--variant", "variant_id", metavar="ID", help=_VARIANT_HELP)
@click.option("--digest", help=_DIGEST_HELP)
@click.option("--json", "as_json", is_flag=True)
def status(
    hash_: str | None, variant_id: str | None, digest: str | None, as_json: bool, **flags: Any
) -> None:
    """Show every submitted variant of COMMIT [HEAD] and its state.

    COMMIT is a full hash, or what `git rev-parse` resolves in the checkout
    (HEAD, a short hash, a tag, a branch). Each variant shows its ID (for
    --variant) and every option that tells it apart from the others.

    The exit code is about the variant the current scssq.toml and flags select
    (the one `scssq submit` here would make), or --variant's; when they name no
    entry, about every variant. Exit codes: 0 finished ok, 1 a stored compile
    error, 2 usage, 3 infrastructure, 4 unknown commit or variant, or still
    compiling, 5 contested (submitted with other sources too: --digest picks one).
    """
    from .client import Client
    from .queries import variants
    from .selection import from_flags, refusal, select

    def run() -> int:
        settings = _settings()
        sel = from_flags(Path.cwd(), settings.engine, flags)
        commit = refs.resolve(hash_, sel.checkout).hash
        where = (commit, sel.project)
        found = variants(Client(settings), sel.project, commit)
        found, judged = select(found, sel.wanted, variant_id, digest, where)
        shown = [dataclasses.asdict(v) for v in found]
        if not as_json:
            printing.print_variants(found)
        if problem := refusal(found, judged, sel.wanted, where):
            printing.fail(problem, as_json, {"variants": shown})
        if as_json:
            click.echo(json.dumps(shown))
        states = {v.state for v in judged}
        if "error" in states:
            return EXIT_COMPILE
        return EXIT_OK if states == {"ok"} else EXIT_NOT_FOUND

    _run(as_json, run)


@main.command()
@click.argument("hash_", metavar=_COMMIT_ARG, required=False)
@click_options()
@click.option("--variant", "variant_id", metavar="ID", help=_VARIANT_HELP)
@click.option("--digest", help=_DIGEST_HELP)
def fetch(hash_: str | None, variant_id: str | None, digest: str | None, **flags: Any) -> None:
    """Write the stored CSS of COMMIT [HEAD] under --out.

    COMMIT is a full hash, or what `git rev-parse` resolves in the checkout.
    With several variants (entries/options) for the commit, --variant ID (as
    `scssq status` prints it) picks one, else the scssq.toml/flags options do.
    Exit codes: 0 written, 1 a stored compile error, 2 usage, 3 infrastructure,
    4 no finished result, 5 contested (submitted with other sources too: --digest
    picks one).
    """
    from .client import Client
    from .queries import fetch as do_fetch
    from .queries import variants
    from .selection import from_flags, select, served

    def run() -> int:
        settings = _settings()
        sel = from_flags(Path.cwd(), settings.engine, flags)
        commit = refs.resolve(hash_, sel.checkout).hash
        where = (commit, sel.project)
        client = Client(settings)
        found = variants(client, sel.project, commit)
        variant = served(*select(found, sel.wanted, variant_id, digest, where), where)
        for e in do_fetch(client, variant, sel.out, sel.targets):
            click.echo(f"fetched  {e.entry} -> {e.css} {printing.human_size(e.size)}")
        click.echo(f"digest   {variant.digest}")
        return EXIT_OK

    _run(False, run)


@main.command()
def health() -> None:
    """Check Redis (reachable, noeviction), the store and that a worker is alive.

    Exit codes: 0 healthy, 2 bad configuration, 3 a check failed.
    """
    from .client import Client
    from .queries import health as do_health

    def run() -> int:
        checks, warnings = do_health(Client(_settings()))
        for name, ok, detail in checks:
            click.echo(f"{'ok' if ok else 'FAIL':<4} {name}: {detail}")
        for warning in warnings:
            click.echo(f"WARN worker names: {warning}")
        return EXIT_OK if all(ok for _, ok, _ in checks) else EXIT_INFRA

    _run(False, run)


main.add_command(gc)
