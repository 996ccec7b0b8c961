"""Image dimensions from the first bytes of a PNG, JPEG, GIF or WEBP file, and from ``data:`` URLs.

Only a prefix of a data URL is decoded (enough for any header but a JPEG with a huge metadata block);
an image whose size cannot be read is treated by the caller as 1024x1024.
"""

from __future__ import annotations

import base64
import binascii
import struct

_PREFIX_CHARS = 96 * 1024  # base64 characters decoded from a data URL (a multiple of 4)
_JPEG_SIZE_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class BadImageDataError(ValueError):
    """The data URL is not valid base64 image data."""


def size_from_bytes(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from an image header, or None for an unknown or truncated format."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return _valid(width, height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return _valid(width, height)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def size_from_data_url(url: str) -> tuple[int, int] | None:
    """The size of the image in a ``data:image/...;base64,`` URL; BadImageDataError if it is not base64."""
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise BadImageDataError("Invalid base64 image: expected data:image/<type>;base64,<data>.")
    prefix = payload[:_PREFIX_CHARS].strip()
    prefix = prefix[: len(prefix) - len(prefix) % 4]
    try:
        data = base64.b64decode(prefix, validate=True)
    except (binascii.Error, ValueError):
        raise BadImageDataError("Invalid base64 image: the data is not valid base64.") from None
    if not data:
        raise BadImageDataError("Invalid base64 image: the image is empty.")
    return size_from_bytes(data)


def _valid(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if marker in _JPEG_SIZE_MARKERS:
            if index + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return _valid(width, height)
        if length < 2:
            return None
        index += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _valid(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return _valid((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _valid(width, height)
    return None
