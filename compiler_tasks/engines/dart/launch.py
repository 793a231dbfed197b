"""Start the Dart Sass compiler under the engine limits, then become it (``execv``).

``python -P -m compiler_tasks.engines.dart.launch --memory-mb N --parent PID -- DART SNAPSHOT
--embedded`` sets, in this order: PR_SET_PDEATHSIG (the compiler dies with the worker
process that started it; it survives ``execv``), RLIMIT_CORE 0 and RLIMIT_AS (the
address-space limit of every engine, ``SCSSQ_ENGINE_MEMORY_MB``), the ``SCHED_BATCH``
scheduling policy, then replaces itself with the compiler. Doing this in a separate
program rather than in a ``preexec_fn`` keeps the worker process safe with threads
(Sentry's transport, Celery's timers).

The Dart VM in the bundled standalone release reserves little address space: measured
with Dart Sass 1.99 on linux-x64, Bootstrap 5.3.3 compiles with ``ulimit -v`` 512 MiB
(peak RSS 64 MiB), and a compile that exceeds the limit makes the VM abort ("Out of
Memory" / SIGABRT), which the host reports as a limit hit: a LimitExceeded naming
``SCSSQ_ENGINE_MEMORY_MB`` (exit 1, never cached, not retried; see
:mod:`compiler_tasks.engines.dart.engine`).

``SCHED_BATCH`` (no privilege needed; every VM thread inherits it) marks the compiler
as the CPU-bound batch work it is: its threads no longer preempt the task's process,
nor each other, when a message wakes them. The host and the compiler hand each import
request back and forth (two round trips per loaded file), so a Bootstrap compile made
about 150 such preemptions on each side; with the policy, a handful. Measured on 2
cores, it saves a few percent of the CPU and wall time of a warm compile
(``bench/dart_host.py``). Standard library only.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

MIB = 1 << 20


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:
        raise SystemExit(0)  # the parent is already gone


def _batch_policy() -> None:
    """Run as ``SCHED_BATCH`` where the platform has it (see the module doc)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point; never returns on success."""
    args = sys.argv[1:] if argv is None else argv
    if "--" not in args:
        print("usage: dart_launch --memory-mb N --parent PID -- PROGRAM ARGS...", file=sys.stderr)
        return 2
    split = args.index("--")
    opts = dict(zip(args[:split:2], args[1:split:2], strict=False))
    command = args[split + 1 :]
    _die_with_parent(int(opts.get("--parent", "0")))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = int(opts.get("--memory-mb", "2048")) * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _batch_policy()
    os.execv(command[0], command)
    return 127  # pragma: no cover (execv raises on failure)


if __name__ == "__main__":
    raise SystemExit(main())
