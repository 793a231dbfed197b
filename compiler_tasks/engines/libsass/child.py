"""The libsass engine process: ``python -P -m compiler_tasks.engines.libsass.child``.

It serves compiles one at a time over its stdin/stdout and is killed by its parent on a
timeout. Protocol (both ways): a 4-byte big-endian length, then that many bytes of JSON.
A response header may list ``blobs`` lengths; that many raw bytes follow it in order
(CSS, then the source map). Statuses: ``ok``, ``error`` (compile error, message ready to
show), ``invalid`` (bad request), ``oom`` (memory limit hit; the process then exits) and
``crash`` (a bug here; details on the original stderr only); ``limit`` (an output over
the size limit) and ``unreadable`` (a bundle file the worker's disk failed to give):
outcomes of this worker, never cached.

Limits, set here after the imports: RLIMIT_AS (engine memory), RLIMIT_FSIZE (only the
per-compile stderr capture file is written), RLIMIT_CORE 0, and before each compile a
soft RLIMIT_CPU backstop for when the parent is gone. PR_SET_PDEATHSIG kills it with its
parent. libsass prints ``@warn``/``@debug`` on fd 2, which points to a scratch file during
a compile; its text comes back, scrubbed of worker paths, as ``warnings``.

Every import goes through :class:`ImportGuard` (see :mod:`compiler_tasks.engines.resolver`), so
libsass never looks up a file by itself. Only the standard library, ``sass`` and the
resolver are imported, so the process starts in tens of milliseconds.
"""

from __future__ import annotations

import json
import os
import posixpath
import resource
import signal
import struct
import sys
import tempfile
import traceback
from typing import Any

import sass

from compiler_tasks.engines import resolver

HEADER = struct.Struct(">I")
MAX_REQUEST = 1 << 20
MIB = 1 << 20
CPU_SLACK = 5


class _Refusal(Exception):
    """Raised by the guard; the real message is kept on the guard (libsass adds a traceback)."""


class ImportGuard:
    """The importer passed to libsass: resolves every import from the bundle only."""

    def __init__(self, root: str, load_dirs: tuple[str, ...]) -> None:
        self.root = root
        self.load_dirs = load_dirs
        self.sources: dict[str, str] = {}
        #: Each importer's parsed @import statements: Bootstrap's entry imports 87 files.
        self.statements: dict[str, list[tuple[list[str], bool]]] = {}
        self.refusal: tuple[str, str, int, int] | None = None  # (message, file, line, col)
        self.out_of_memory = False
        #: A bundle file the worker could not read (its disk, not the sources): not cached.
        self.unreadable: str | None = None
        self.listings = resolver.Listings()

    def read(self, path: str) -> bytes:
        """A bundle file's bytes, cut at a NUL like libsass does (the binding rejects NULs)."""
        with open(path, "rb") as handle:
            data = handle.read()
        cut = data.find(b"\x00")
        data = data if cut < 0 else data[:cut]
        self.remember(path, data)
        return data

    def remember(self, path: str, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        self.sources[path] = text
        rule = resolver.find_module_rule(text)
        if rule is not None:
            line, col, name = rule
            message = f"@{name} is not supported by libsass; compile with --engine dart-sass"
            self.refusal = (message, resolver.relative(path, self.root), line, col)
            raise _Refusal(message)

    def __call__(self, target: str, prev: str) -> Any:
        try:
            return self._answer(target, prev)
        except _Refusal:
            raise
        except MemoryError:
            self.out_of_memory = True
            raise _Refusal("out of memory") from None
        except OSError as e:
            if isinstance(e, FileNotFoundError | IsADirectoryError | NotADirectoryError):
                return self._import_failed(target, prev, e)
            self.unreadable = f"{resolver.relative(prev, self.root)}: {e.strerror or e}"
            raise _Refusal("unreadable") from None
        except resolver.ImportRefused as e:
            self.refusal = (e.message, resolver.relative(prev, self.root), 0, 0)
            raise _Refusal(e.message) from None
        except Exception as e:  # never a TypeError: the binding would retry with one arg
            return self._import_failed(target, prev, e)

    def _import_failed(self, target: str, prev: str, e: Exception) -> Any:
        where = resolver.relative(prev, self.root)
        self.refusal = (f'import "{target}" failed ({type(e).__name__})', where, 0, 0)
        raise _Refusal("import failed") from None

    def _statements(self, path: str) -> list[tuple[list[str], bool]]:
        """The @import statements of the bundle file ``path`` (none if not read here)."""
        if path not in self.statements:
            source = self.sources.get(path)
            self.statements[path] = [] if source is None else resolver.import_statements(source)
        return self.statements[path]

    def _answer(self, target: str, prev: str) -> Any:
        if resolver.is_refused_scheme(target):
            raise resolver.ImportRefused(f'import "{target}" is outside the bundle')
        if resolver.is_plain_css(target):
            return None  # libsass emits a CSS @import and reads nothing
        prev_dir = posixpath.dirname(prev)
        if not prev.endswith(".sass") and resolver.media_queries_only(
            self._statements(prev), target
        ):
            bases = (prev_dir, self.root, *self.load_dirs)
            resolver.check_native_lookup(target, bases, self.root)
            return None  # a statement with media queries: libsass emits it as CSS
        found = resolver.resolve(target, prev_dir, self.root, self.load_dirs, self.listings)
        data = self.read(found.path)
        if found.indented:
            # libsass converts indented syntax only for files it reads itself; let it read
            # this one, after checking that its lookup of the path can only find this file.
            files, index = resolver.candidates(posixpath.basename(found.path))
            for other in files + index:
                path = posixpath.join(posixpath.dirname(found.path), other)
                if path != found.path and os.path.lexists(path):
                    raise resolver.ImportRefused(
                        f"It's not clear which file to import for '@import \"{target}\"'. "
                        f"Candidates: {found.rel}, {resolver.relative(path, self.root)}."
                    )
            return [(found.path,)]
        return [(found.path, data)]


def compile_request(
    req: dict[str, Any], max_output: int, max_message: int
) -> tuple[dict[str, Any], list[bytes]]:
    """Run one compile; returns the response header and blobs."""
    root = os.path.realpath(str(req["root"]))  # the parent sends it resolved already
    entry = str(req["entry"])
    roots = (root,)
    entry_path = posixpath.normpath(posixpath.join(root, entry))
    if not resolver.is_inside(entry_path, root) or not resolver.is_inside(
        os.path.realpath(entry_path), root
    ):
        return {"status": "invalid", "message": f"entry {entry!r} leaves the bundle"}, []
    load_dirs = tuple(
        p
        for p in (posixpath.normpath(posixpath.join(root, str(lp))) for lp in req["load_paths"])
        if resolver.is_inside(p, root)
        and resolver.is_inside(os.path.realpath(p), root)
        and os.path.isdir(p)
    )
    guard = ImportGuard(root, load_dirs)
    kwargs: dict[str, Any] = {
        "filename": entry_path,
        "include_paths": list(load_dirs),
        "output_style": str(req["style"]),
        "importers": [(0, guard)],
    }
    css_path = posixpath.splitext(entry_path)[0] + ".css"
    if req.get("source_map"):
        kwargs["source_map_filename"] = css_path + ".map"
        kwargs["output_filename_hint"] = css_path
        kwargs["source_map_contents"] = True
    try:
        guard.read(entry_path)
        os.chdir(root)  # libsass's implicit first include path is its working directory
        result = sass.compile(**kwargs)
    except (_Refusal, sass.CompileError) as e:
        return _failed(str(e), guard, root, entry, max_message), []
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return {"status": "error", "message": f"{entry}: cannot read the entry"}, []
    except OSError as e:  # the worker's disk, not the sources: never a cached result
        return {"status": "unreadable", "message": f"{entry}: {e.strerror or 'read failed'}"}, []
    finally:
        os.chdir("/")
    return _output(result, entry, roots, max_output)


def _failed(
    text: str, guard: ImportGuard, root: str, entry: str, max_message: int
) -> dict[str, Any]:
    """The response to a failed compile: out of memory, an unreadable bundle file, or the
    error message for users."""
    if guard.out_of_memory or "Unable to allocate memory" in text:
        return {"status": "oom"}
    if guard.unreadable is not None:
        return {"status": "unreadable", "message": guard.unreadable}
    if guard.refusal is not None:
        message, where, line, col = guard.refusal
        if not line:  # refused import: libsass knows where the @import statement is
            line, col = resolver.error_position(text) or (0, 0)
        message = _at(message, where, line, col)
    else:
        message = resolver.format_libsass_error(text, root, entry)
    message = resolver.bound_text(resolver.scrub(message, (root,)), max_message, "message")
    return {"status": "error", "message": message}


def _output(
    result: Any, entry: str, roots: tuple[str, ...], max_output: int
) -> tuple[dict[str, Any], list[bytes]]:
    """The response to a compile that succeeded: the CSS and map, unless too large or
    naming a worker path."""
    css_text, map_text = result if isinstance(result, tuple) else (result, None)
    css = css_text.encode("utf-8")
    blobs = [css]
    if map_text is not None:
        blobs.append(map_text.encode("utf-8"))
    for blob, what in zip(blobs, ("output", "source map output"), strict=False):
        if len(blob) > max_output:
            message = (
                f"{entry}: {what} exceeds {max_output} bytes (the limit is SCSSQ_MAX_OUTPUT_BYTES)"
            )
            return {"status": "limit", "message": message}, []
        if any(r.encode("utf-8") in blob for r in roots):
            return {"status": "error", "message": f"{entry}: {what} names a worker path"}, []
    return {"status": "ok", "blobs": [len(b) for b in blobs]}, blobs


def _at(message: str, where: str, line: int, col: int) -> str:
    return f"{where}:{line}:{col}: {message}" if line else f"{where}: {message}"


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:
        raise SystemExit(0)


def _set_limits(memory_mb: int, fsize: int) -> None:
    _touch_exception_state()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long write fails, it does not kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    limit = memory_mb * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _touch_exception_state() -> None:
    """Have libsass throw and catch one C++ exception before the memory limit is set.

    libstdc++ keeps each thread's exception state in thread-local storage that glibc
    allocates on first use. Left to the first ``std::bad_alloc`` under RLIMIT_AS, that
    allocation fails too, and glibc ends the process with status 127 ("cannot allocate
    memory for thread-local data") instead of the memory-limit report.
    """
    try:
        sass.compile(string="a {")
    except sass.CompileError:
        pass


def _cpu_backstop(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + CPU_SLACK
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def serve(memory_mb: int, max_output: int, max_message: int, parent: int, trace: str = "") -> int:
    """The request loop; returns the exit status."""
    trace_fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if trace else -1
    sys.path[:] = [os.path.abspath(p) for p in sys.path if p]  # chdir must not change imports
    proto_in, proto_out = 0, os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints must not corrupt the protocol
    _die_with_parent(parent)
    capture = tempfile.TemporaryFile()  # noqa: SIM115 (the process's lifetime)
    cap = 4 * max_message + 65536
    _set_limits(memory_mb, cap)
    saved_err = os.dup(2)
    while True:
        head = _read_exact(proto_in, HEADER.size)
        if head is None:
            return 0
        (size,) = HEADER.unpack(head)
        body = _read_exact(proto_in, size) if size <= MAX_REQUEST else None
        if body is None:
            return 2
        req = json.loads(body)
        roots = (os.path.realpath(str(req["root"])),)
        blobs: list[bytes] = []
        warnings = b""
        if trace_fd >= 0:
            os.write(trace_fd, f"{os.getpid()} {req.get('entry')}\n".encode())
        try:
            _cpu_backstop(float(req.get("timeout", 600)))
            sys.stderr.flush()
            os.ftruncate(capture.fileno(), 0)
            os.lseek(capture.fileno(), 0, os.SEEK_SET)
            os.dup2(capture.fileno(), 2)
            try:
                header, blobs = compile_request(req, max_output, max_message)
            finally:
                os.dup2(saved_err, 2)
                os.lseek(capture.fileno(), 0, os.SEEK_SET)
                warnings = os.read(capture.fileno(), cap)
        except MemoryError:
            header, blobs = {"status": "oom"}, []
        except Exception as e:
            traceback.print_exc()
            header, blobs = {"status": "crash", "message": type(e).__name__}, []
        try:
            if len(warnings) >= cap:
                header["retire"] = True  # the capture hit RLIMIT_FSIZE; std::cerr is broken
            text = resolver.scrub(warnings.decode("utf-8", "replace"), roots)
            header["warnings"] = resolver.bound_text(text, max_message, "warnings")
            data = json.dumps(header).encode("utf-8")
        except MemoryError:  # the heap is still near the limit after a blow-up
            header, blobs = {"status": "oom"}, []
            data = b'{"status": "oom"}'
        _write_all(proto_out, HEADER.pack(len(data)) + data)
        for blob in blobs:
            _write_all(proto_out, blob)
        if header["status"] == "oom":
            return 3


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``--memory-mb N --max-output B --max-message B --parent PID``."""
    args = sys.argv[1:] if argv is None else argv
    opts = dict(zip(args[::2], args[1::2], strict=False))
    return serve(
        int(opts.get("--memory-mb", "2048")),
        int(opts.get("--max-output", str(32 * MIB))),
        int(opts.get("--max-message", "65536")),
        int(opts.get("--parent", "0")),
        opts.get("--trace", ""),
    )


if __name__ == "__main__":
    raise SystemExit(main())
