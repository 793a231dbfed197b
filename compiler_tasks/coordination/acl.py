"""Redis ACL users of a fleet: ``deploy/redis-acl.conf`` adapted to a prefix and queue.

The file holds two Redis 7 ACL users for the default names (``SCSSQ_PREFIX``
and ``SCSSQ_QUEUE`` both ``scssq``) and no password:

* ``scssq-client`` (CI jobs) reads the fleet's keys, subscribes to done
  channels and enqueues; each write is granted with its own key in a selector
  ``(...)``: LPUSH on the queue and INCR on ``<prefix>:stats:*``, nothing else.
  It can write no lock, result, commit mapping or kombu binding, and publish
  nothing (no done message, no Celery event).
* ``scssq-worker`` (celery workers) runs everything but ``@dangerous``
  commands on scssq's keys and Celery's.

:func:`render` rewrites the key and channel patterns for another prefix and
queue, can suffix the user names (one pair of users per project fleet in one
Redis: a project's client credential then reaches only its own prefix and
queue, so it cannot map another project's commits) and can append password
hashes; ``python -m compiler_tasks.coordination.acl --prefix P --queue Q
[--user-suffix -S] [--password-from-env USER=VAR ...] FILE`` prints the result. The
tests load exactly what this module renders from the file, so the deployed
rules and the tested rules are one text.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from ..settings import DEFAULT_PREFIX, DEFAULT_QUEUE

#: The ACL file of a source checkout (not part of the installed package).
ACL_FILE = Path(__file__).resolve().parents[2] / "deploy" / "redis-acl.conf"
CLIENT_USER = "scssq-client"
WORKER_USER = "scssq-worker"
_PATTERN_RE = re.compile(r"^(\(?)((?:%R|%W|%RW)?~|&)(.*?)(\)?)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def users(text: str) -> dict[str, list[str]]:
    """User name -> its rules, for every ``user NAME RULES...`` line of an ACL file."""
    found: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if parts[0] != "user" or len(parts) < 2:
            raise ConfigError(f"ACL file line {number}: expected `user NAME RULES...`")
        found[parts[1]] = parts[2:]
    return found


def _pattern(body: str, prefix: str, queue: str) -> str:
    """One key or channel pattern written for the default names, for ``prefix``/``queue``."""
    if body.startswith(DEFAULT_PREFIX + ":"):
        return prefix + body[len(DEFAULT_PREFIX) :]
    if body == DEFAULT_QUEUE or body.startswith(DEFAULT_QUEUE + "["):
        return queue + body[len(DEFAULT_QUEUE) :]
    if body.startswith("_kombu.") and body.endswith("." + DEFAULT_QUEUE):
        return body[: -len(DEFAULT_QUEUE)] + queue
    return body


def _rule(token: str, prefix: str, queue: str) -> str:
    match = _PATTERN_RE.match(token)
    if match is None:
        return token
    opening, kind, body, closing = match.groups()
    return f"{opening}{kind}{_pattern(body, prefix, queue)}{closing}"


def render(
    text: str,
    prefix: str = DEFAULT_PREFIX,
    queue: str = DEFAULT_QUEUE,
    passwords: Mapping[str, str] | None = None,
    suffix: str = "",
) -> str:
    """The ACL file ``text`` for ``prefix`` and ``queue``, with password hashes appended.

    Every user but ``default`` is renamed ``NAME + suffix``; ``passwords`` are keyed
    by the new names. Passwords are added as ``#<sha256>`` so the rendered file never
    holds one in clear.
    """
    for name, value in (("prefix", prefix), ("queue", queue)):
        if not _NAME_RE.match(value):
            raise ConfigError(f"{name} {value!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if suffix and not _NAME_RE.match("x" + suffix):
        raise ConfigError(f"user suffix {suffix!r}: use up to 63 letters, digits, '.', '_' or '-'")
    lines = []
    for original, rules in users(text).items():
        name = original if original == "default" else original + suffix
        rendered = [_rule(token, prefix, queue) for token in rules]
        secret = (passwords or {}).get(name)
        if secret is not None:
            rendered.append("#" + hashlib.sha256(secret.encode("utf-8")).hexdigest())
        lines.append(" ".join(["user", name, *rendered]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the ACL file for a prefix and queue (passwords from named variables)."""
    parser = argparse.ArgumentParser(
        prog="python -m compiler_tasks.coordination.acl", description=__doc__
    )
    parser.add_argument("file", nargs="?", default=str(ACL_FILE))
    parser.add_argument("--prefix", default=os.environ.get("SCSSQ_PREFIX", DEFAULT_PREFIX))
    parser.add_argument("--queue", default=os.environ.get("SCSSQ_QUEUE", DEFAULT_QUEUE))
    parser.add_argument(
        "--user-suffix",
        default="",
        metavar="SUFFIX",
        help="append SUFFIX to every user name but default (one pair of users per project)",
    )
    parser.add_argument(
        "--password-from-env",
        action="append",
        default=[],
        metavar="USER=VARIABLE",
        help="append the sha256 of $VARIABLE as USER's password (repeatable)",
    )
    args = parser.parse_args(argv)
    passwords = {}
    for item in args.password_from_env:
        user, _, variable = item.partition("=")
        if variable not in os.environ:
            print(f"error: {variable!r} is not set (for user {user!r})", file=sys.stderr)
            return 2
        passwords[user] = os.environ[variable]
    try:
        text = Path(args.file).read_text(encoding="utf-8")
        sys.stdout.write(render(text, args.prefix, args.queue, passwords, args.user_suffix))
    except (OSError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
