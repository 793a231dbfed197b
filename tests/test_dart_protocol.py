"""The dart-sass host's packet reader and bundle file lookups, on real pipes and trees.

Fast: no compiler process. The reader must split any chunking of the compiler's stream
into the same packets; the lookups must answer as a stat and a realpath per path would.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from compiler_tasks.engines.dart.files import BundleFiles
from compiler_tasks.engines.dart.protocol import (
    PacketReader,
    ProtocolViolation,
    encode_packet,
    encode_varint,
    pb,
)
from compiler_tasks.engines.resolver import ImportRefused


def _log(text: str) -> pb.OutboundMessage:
    message = pb.OutboundMessage()
    message.log_event.message = text
    return message


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def test_one_read_returns_every_packet_it_completes(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    texts = ["a", "é" * 300, "", "z" * 5000]
    os.write(write_fd, b"".join(encode_packet(i + 1, _log(t)) for i, t in enumerate(texts)))
    reader = PacketReader(1 << 20)
    packets = reader.read_from(read_fd)
    assert packets is not None
    assert [(p.compilation_id, p.message.log_event.message) for p in packets] == [
        (i + 1, t) for i, t in enumerate(texts)
    ]
    assert reader.pending == 0


def test_packets_split_across_reads_at_every_byte(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    stream = encode_packet(300, _log("x" * 200)) + encode_packet(7, _log("y"))
    for cut in range(1, len(stream)):
        reader = PacketReader(1 << 20)
        os.write(write_fd, stream[:cut])
        first = reader.read_from(read_fd)
        os.write(write_fd, stream[cut:])
        second = reader.read_from(read_fd)
        assert first is not None and second is not None
        ids = [p.compilation_id for p in first + second]
        assert ids == [300, 7], cut
        assert reader.pending == 0


def test_end_of_stream_is_none(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(write_fd)
    assert PacketReader(1 << 20).read_from(read_fd) is None


def test_oversized_and_undecodable_packets_are_violations() -> None:
    with pytest.raises(ProtocolViolation, match="exceeds"):
        PacketReader(100).feed(encode_packet(1, _log("x" * 200)))
    body = encode_varint(1) + b"\xff\xff\xff"
    with pytest.raises(ProtocolViolation, match="undecodable"):
        PacketReader(100).feed(encode_varint(len(body)) + body)
    with pytest.raises(ProtocolViolation, match="varint"):
        PacketReader(100).feed(b"\xff" * 11)


def _stat_is_file(path: str) -> bool:
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def test_bundle_lookups_answer_like_stat_and_refuse_links_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("a/_x.scss", "a/b/index.scss", "c.css"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(".a { b: c; }\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.scss").write_text("$secret: 1;\n")
    (root / "a" / "link.scss").symlink_to(root / "a" / "_x.scss")
    (root / "a" / "broken.scss").symlink_to(root / "gone.scss")
    (root / "a" / "out.scss").symlink_to(tmp_path / "outside" / "secret.scss")
    (root / "up").symlink_to(tmp_path / "outside")
    files = BundleFiles(str(root))
    names = ["a/_x.scss", "a/link.scss", "a/broken.scss", "a/out.scss", "a/b", "a/none.scss"]
    paths = [str(root / n) for n in [*names, "up/secret.scss", "c.css/x.scss", "no/x.scss"]]
    for path in paths:
        assert files.is_file(path) == _stat_is_file(path), path
    assert not files.is_file(str(tmp_path / "outside" / "secret.scss"))  # never looked at
    assert files.resolve(str(root / "a" / "x"), False) == str(root / "a" / "_x.scss")
    assert files.read(files.checked(str(root / "a" / "link.scss"), "link")) == b".a { b: c; }\n"
    for rel in ("a/out.scss", "up/secret.scss"):
        with pytest.raises(ImportRefused, match="outside the bundle"):
            files.checked(str(root / rel), rel)
