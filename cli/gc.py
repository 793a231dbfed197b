"""``scssq gc``: delete the store's objects that nothing reaches any more.

Parses and prints only; the rule and the deleting live in :mod:`compiler_tasks.store.gc`.
Runs with the workers' credentials (it deletes from the store and takes compile locks).
Exit codes: 0 done, 2 bad configuration, 3 Redis or the store failed (a delete included).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from compiler_tasks.errors import EXIT_INFRA, EXIT_OK, require

from .printing import fail

#: Seconds: an hour, six times the default submit --timeout (SCSSQ_SUBMIT_TIMEOUT).
DEFAULT_GRACE = 3600.0


@click.command()
@click.option("--apply", "apply", is_flag=True, help="Delete (else only list what would go).")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE,
    show_default=True,
    metavar="SECONDS",
    help="Never delete an object younger than this; must exceed the longest --timeout "
    "of your submits (a waiting request still reads its bundle).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, on failure too.")
def gc(apply: bool, grace: float, as_json: bool) -> None:
    """Delete artifacts, manifests and bundles nothing reaches any more.

    A key's artifacts go once it has no result (SCSSQ_RESULT_TTL) and no compile,
    and all of them are older than --grace; a bundle once it is older than that.
    Dry run by default: lists what would go and the bytes it would free.
    Exit codes: 0 done, 2 configuration, 3 Redis or the store failed.
    """
    try:
        report = _collect(apply, grace)
    except Exception as e:
        fail(e, as_json)
    code = EXIT_INFRA if report.failed else EXIT_OK
    if as_json:
        click.echo(json.dumps({"ok": code == EXIT_OK, "exit_code": code, **report.as_dict()}))
    else:
        _print(report)
    for failure in report.failed[:10]:
        click.echo(f"scssq: error: {failure}", err=True)
    sys.exit(code)


def _collect(apply: bool, grace: float) -> Any:
    require("redis", "worker", "scssq gc (it runs with the fleet's credentials)")
    import redis

    from compiler_tasks.coordination.connections import redis_client
    from compiler_tasks.errors import RedisUnavailable
    from compiler_tasks.keys import RedisKeys
    from compiler_tasks.settings import Settings
    from compiler_tasks.store import open_store
    from compiler_tasks.store.gc import collect

    settings = Settings.from_env()
    store = open_store(settings.store_url)
    client = redis_client(settings, "scssq-gc")
    try:
        client.ping()  # an unreachable Redis fails here, even with an empty store
        return collect(
            store,
            client,
            RedisKeys(settings.prefix),
            grace=grace,
            lock_ttl_ms=settings.lock_ttl_ms,
            apply=apply,
        )
    except redis.RedisError as e:
        where = settings.redis_shown
        raise RedisUnavailable(f"Redis at {where} failed during gc: {e}") from e
    finally:
        client.close()


def _print(report: Any) -> None:
    if not report.applied:
        for obj in report.selected:
            click.echo(f"would delete {obj.path} {obj.size} B")
    verb = "deleted" if report.applied else "would delete"
    count, size = (
        (report.deleted, report.deleted_bytes)
        if report.applied
        else (len(report.selected), report.selected_bytes)
    )
    click.echo(
        f"{verb} {count} objects, {size} bytes (store {report.listed} objects, "
        f"{report.listed_bytes} bytes)"
    )
    if report.skipped:
        click.echo(f"kept {len(report.skipped)} keys a compile or result reached meanwhile")
    if not report.applied and report.selected:
        click.echo("dry run: pass --apply to delete")
