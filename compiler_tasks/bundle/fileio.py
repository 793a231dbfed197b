"""Reading files by descriptor: reads sized to the file, and opens that never wait.

The warm cache-hit path reads an artifact and compares an output with as few system calls
as it can (a ``stat`` or ``fstat``, ``open``, one ``read``, ``close``); Python's buffered
``open()`` adds an ``ioctl``, two ``lseek`` calls and more ``fstat`` calls per file. A
FIFO put where a file should be must fail, not hang a reader.
"""

from __future__ import annotations

import os

#: Opening a file to read: binary (Windows), and a FIFO does not block the open.
OPEN_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
#: Bytes read per call once a file turned out longer than its ``fstat`` size.
CHUNK = 1 << 20


def read_fd(fd: int, size: int, limit: int | None = None) -> bytes:
    """The bytes of the open file ``fd``, whose ``fstat`` gave ``size``, to its end or at
    most ``limit`` + 1 (the caller checks its limit).

    Sized to the file (reading ``limit`` would allocate it for every file): one ``read``
    when the file is as long as ``size`` said; more when it is shorter (a read cut short)
    or longer (growing, or procfs) than that.
    """
    cap = (1 << 62) if limit is None else limit + 1
    data = os.read(fd, min(size + 1, cap))
    if len(data) == size or len(data) >= cap:
        return data
    parts, total = [data], len(data)
    while total < cap and (chunk := os.read(fd, min(CHUNK, cap - total))):
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)
