"""A real, tiny PNG (8x8 pixels) for generated images, built on first use."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

_SIDE = 8


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=1)
def tiny_png() -> bytes:
    """An 8x8 RGB PNG with a soft gradient."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((32 * x, 32 * y, 160)) for x in range(_SIDE)) for y in range(_SIDE)
    )
    header = struct.pack(">IIBBBBB", _SIDE, _SIDE, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )
