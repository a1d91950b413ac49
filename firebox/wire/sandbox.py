"""A sandbox command's output stream, control plane to SDK: each message (a chunk of one of its
file descriptors, or its exit) packed with the wire codec behind a 4-byte big-endian length."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from . import pack, unpack

FRAME = struct.Struct(">I")


def frame(message: dict[str, Any]) -> bytes:
    data = pack(message)
    return FRAME.pack(len(data)) + data


def take_frames(buf: bytearray) -> Iterator[dict[str, Any]]:
    """The whole messages at the start of buf, each removed from it as it is taken; a partial
    one stays for the bytes still to come."""
    while len(buf) >= FRAME.size:
        (n,) = FRAME.unpack_from(buf)
        if len(buf) < FRAME.size + n:
            return
        message = unpack(bytes(buf[FRAME.size:FRAME.size + n]))
        del buf[:FRAME.size + n]
        yield message
