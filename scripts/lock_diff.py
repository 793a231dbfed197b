"""Print which installed packages differ from a lock: ``python scripts/lock_diff.py LOCK``.

Run by ``make test-latest`` with the canary venv's interpreter: it compares what that
interpreter has installed (the newest releases pyproject.toml's ranges allow) with the
exact versions the lock pins for this interpreter (environment markers evaluated).
Always exits 0 when it could read both: the differences are news, not a failure.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

#: ``name==version`` at the start of a requirement line, then an optional ``; marker``.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\]*))?")


def locked(lock: Path) -> dict[str, str]:
    """The lock's pins that apply to this interpreter, by canonical name."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker.strip()).evaluate():
            continue
        pins[canonicalize_name(name)] = version
    return pins


def installed(skip: set[str]) -> dict[str, str]:
    """What this interpreter has installed, by canonical name (``skip`` left out)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name not in skip:
            found[name] = dist.version
    return found


def differences(pins: dict[str, str], have: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, locked version or "-", installed version or "-") for every mismatch."""
    rows = []
    for name in sorted(pins.keys() | have.keys()):
        was, now = pins.get(name, "-"), have.get(name, "-")
        if was != now:
            rows.append((name, was, now))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path, help="a requirements lock, e.g. requirements/dev.lock")
    parser.add_argument("--skip", action="append", default=["scssq"], help="package to ignore")
    args = parser.parse_args(argv)
    rows = differences(locked(args.lock), installed({canonicalize_name(s) for s in args.skip}))
    if not rows:
        print(f"lock_diff: every installed package is at {args.lock}'s version")
        return 0
    print(f"lock_diff: {len(rows)} package(s) differ from {args.lock} (locked -> installed):")
    width = max(len(name) for name, _, _ in rows)
    for name, was, now in rows:
        print(f"  {name:<{width}}  {was} -> {now}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
