"""Side by side: the miss steps that issue #24's removed second paths touched, old vs new.

``python -m bench.simplify --before DIR [--runs 300]``

``DIR`` holds the old ``compiler_tasks`` package, exported read-only from git, e.g.
``git archive 8ff52fa compiler_tasks | tar -x -C DIR``. It is loaded in this process
as ``before_tasks`` beside the working tree's ``compiler_tasks``, and each run times
both on a fresh Bootstrap 5.3.3 miss variant (a new ``$primary`` in ``main.scss``, as
:mod:`bench.miss` makes), in alternating order:

* **collect**: the client collects the bundle. The old side uses a warm client API's
  source memo, settled before the first run (the best case it had);
* **collect, one-shot**: the same without a memo, as ``scssq submit`` always did (a
  control: that code did not change);
* **pack**: the client packs the bundle;
* **unpack**: the worker unpacks the archive and computes the digest it checks;
* **key**: the compile key of the digest;
* **imports**: the import candidates of every ``@import`` of the bundle (the part of
  a libsass compile's import lookups whose code changed).

Printed: per step and side, the median wall time and the median CPU time of this
thread, the ratio new/old, and the median of the paired differences with its 95 %
interval, as Markdown; their sum (one-shot collect left out) is the change to a warm
client API's miss.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import bundles
from bench.common import median, median_interval

MAX_BYTES = 64 * 1024 * 1024
MAX_FILES = 20_000
STEPS = ("collect", "collect, one-shot", "pack", "unpack", "key", "imports")
#: Steps a miss runs once each (the one-shot collect is the control).
MISS = ("collect", "pack", "unpack", "key", "imports")
_IMPORT_RE = re.compile(r"""@import\s+["']([^"']+)["']""")


def load_before(root: Path) -> ModuleType:
    """The package ``root/compiler_tasks``, imported as ``before_tasks``."""
    init = root / "compiler_tasks" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "before_tasks", init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no compiler_tasks package under {root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["before_tasks"] = module
    spec.loader.exec_module(module)
    return module


def _module(package: str, *names: str) -> ModuleType:
    """The first of ``names`` that ``package`` has: the packaged layout's name first,
    then the flat one of the old package (``bundle`` was a module there)."""
    for name in names[:-1]:
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError:
            continue
    return importlib.import_module(f"{package}.{names[-1]}")


class Side:
    """One version's functions for the timed steps."""

    def __init__(self, package: str, warm: bool) -> None:
        self.bundle = _module(package, "bundle.collect", "bundle")
        self.keys = importlib.import_module(f"{package}.keys")
        self.resolver = _module(package, "engines.resolver", "resolver")
        self.cache: Any = None
        if warm:
            self.cache = importlib.import_module(f"{package}.sources").SourceCache()
        self.options = self.keys.CompileOptions(entries=(bundles.ENTRY,))

    def collect(self, src: Path, warm: bool = True) -> Any:
        limits: dict[str, Any] = {"max_bytes": MAX_BYTES, "max_files": MAX_FILES}
        if warm and self.cache is not None:
            limits["cache"] = self.cache
        return self.bundle.collect(src, exclude=[src / "out"], **limits)

    def worker(self, data: bytes, digest: str) -> str:
        back = self.bundle.read_archive(data, max_bytes=MAX_BYTES, max_files=MAX_FILES)
        assert back.digest == digest
        return str(back.digest)

    def key(self, digest: str) -> str:
        return str(self.keys.compile_key(digest, self.options, "libsass 3.6.6"))

    def imports(self, targets: list[str]) -> int:
        return sum(
            len(files) + len(index) for files, index in map(self.resolver.candidates, targets)
        )


def _timed(fn: Callable[[], Any], into: dict[str, list[float]]) -> Any:
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    out = fn()
    into["cpu"].append((time.thread_time_ns() - cpu) / 1e6)
    into["wall"].append((time.perf_counter_ns() - wall) / 1e6)
    return out


def run(side: Side, src: Path, times: dict[str, dict[str, list[float]]]) -> None:
    bundle = _timed(lambda: side.collect(src), times["collect"])
    _timed(lambda: side.collect(src, warm=False), times["collect, one-shot"])
    data = _timed(bundle.archive, times["pack"])
    targets = [t for text in bundle.files.values() for t in _IMPORT_RE.findall(text.decode())]
    digest = _timed(lambda: side.worker(data, bundle.digest), times["unpack"])
    _timed(lambda: side.key(digest), times["key"])
    _timed(lambda: side.imports(targets), times["imports"])


def _new_times() -> dict[str, dict[str, list[float]]]:
    return {step: {"wall": [], "cpu": []} for step in STEPS}


def check_formats(old: Side, new: Side, src: Path) -> None:
    """Each side reads the other's archives: clients and workers of either version mix."""
    bundle = old.collect(src, warm=False)
    assert new.collect(src).files == bundle.files
    old_data, new_data = bundle.archive(), new.collect(src).archive()
    assert new.worker(old_data, bundle.digest) == old.worker(new_data, bundle.digest)


def table(old: dict[str, dict[str, list[float]]], new: dict[str, dict[str, list[float]]]) -> str:
    rows = [
        "| step | clock | before (ms) | after (ms) | after/before | paired delta (ms, 95 % CI) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    totals = {"wall": 0.0, "cpu": 0.0}
    for step in STEPS:
        for clock in ("cpu", "wall"):
            a, b = old[step][clock], new[step][clock]
            deltas = [y - x for x, y in zip(a, b, strict=True)]
            low, high = median_interval(deltas)
            totals[clock] += median(deltas) if step in MISS else 0.0
            rows.append(
                f"| {step} | {clock} | {median(a):.3f} | {median(b):.3f} | "
                f"{median(b) / median(a):.2f} | {median(deltas):+.3f} ({low:+.3f} to {high:+.3f}) |"
            )
    for clock, total in totals.items():
        rows.append(f"| **one miss, warm API** | {clock} | | | | **{total:+.2f}** |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="folder of the old package")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per side (300)")
    args = parser.parse_args()
    load_before(args.before)
    old, new = Side("before_tasks", warm=True), Side("compiler_tasks", warm=False)
    times = {"old": _new_times(), "new": _new_times()}
    with tempfile.TemporaryDirectory(prefix="scssq-bench-simplify-") as tmp:
        src = bundles.bootstrap(Path(tmp) / "bootstrap", 0)
        (src / "out").mkdir()
        check_formats(old, new, src)
        old.collect(src)  # the old client's memo of the tree...
        time.sleep(3.5)  # ...kept once its folders and files are past the racy window
        for i in range(1, args.runs + 1):
            bundles.bootstrap(src.parent / "bootstrap", i)  # a new main.scss: a miss
            gc.collect()
            order = [("old", old), ("new", new)]
            for name, side in order if i % 2 else order[::-1]:
                run(side, src, times[name])
    print(f"Bootstrap 5.3.3 miss steps, {args.runs} runs per side, alternating\n")
    print(table(times["old"], times["new"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
