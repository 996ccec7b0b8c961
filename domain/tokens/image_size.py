"""Reading an image's width and height from the first bytes of a ``data:`` URI, without decoding it.

Only a bounded prefix is ever looked at: at most ``MAX_PREFIX_CHARS`` characters of the payload, which
is enough for the headers of PNG, GIF and WEBP, and for the start-of-frame marker of a JPEG unless
a very large metadata segment comes first. Anything that cannot be read (another format, a truncated
or malformed header, a size of zero) gives None, and the caller charges the worst case.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote_to_bytes

__all__ = ["MAX_PREFIX_CHARS", "image_size_from_bytes", "image_size_from_data_uri"]

MAX_PREFIX_CHARS = 96 * 1024
"""Payload characters decoded at most (about 72 KiB of image for base64)."""

_MAX_HEADER_CHARS = 1024
"""The comma that ends a data URI's media type must come within this many characters."""

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_URLSAFE = bytes.maketrans(b"-_", b"+/")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM, RST0..RST7, SOI.
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})

Size = tuple[int, int]


def _positive(width: int, height: int) -> Size | None:
    return (width, height) if width > 0 and height > 0 else None


def _png_size(head: bytes) -> Size | None:
    # Signature, then the IHDR chunk: length (4), type (4), width (4), height (4), all big-endian.
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return _positive(int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))


def _gif_size(head: bytes) -> Size | None:
    # "GIF87a" or "GIF89a", then the logical screen width and height, little-endian 16-bit.
    if len(head) < 10:
        return None
    return _positive(int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"))


def _webp_size(head: bytes) -> Size | None:
    # "RIFF" size "WEBP", then the first chunk's FourCC at 12 and its payload from 20.
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        # Lossy: frame tag (3), start code (3), then 14-bit width and height, little-endian.
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        height = int.from_bytes(head[28:30], "little") & 0x3FFF
        return _positive(width, height)
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        # Lossless: signature byte, then 14 bits of width - 1 and 14 bits of height - 1.
        bits = int.from_bytes(head[21:25], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(head) >= 30:
        # Extended: flags (1), reserved (3), then 24-bit canvas width - 1 and height - 1.
        return _positive(int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1)
    return None


def _jpeg_size(head: bytes) -> Size | None:
    """Walk the marker segments up to the first start-of-frame; give up at the scan or past the prefix."""
    index = 2
    end = len(head)
    while index < end:
        if head[index] != 0xFF:
            return None
        while index < end and head[index] == 0xFF:  # fill bytes
            index += 1
        if index >= end:
            return None
        marker = head[index]
        index += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or start of scan: no frame header before it
            return None
        if index + 2 > end:
            return None
        length = int.from_bytes(head[index : index + 2], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            # Length (2), sample precision (1), height (2), width (2).
            if index + 7 > end:
                return None
            height = int.from_bytes(head[index + 3 : index + 5], "big")
            width = int.from_bytes(head[index + 5 : index + 7], "big")
            return _positive(width, height)
        index += length
    return None


def image_size_from_bytes(head: bytes) -> Size | None:
    """``(width, height)`` of a PNG, JPEG, GIF or WEBP image from its first bytes, or None."""
    if head.startswith(_PNG_SIGNATURE):
        return _png_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _gif_size(head)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    return None


def _decode_base64_prefix(payload: str) -> bytes | None:
    raw = payload[:MAX_PREFIX_CHARS].encode("ascii", "ignore").translate(_URLSAFE)
    cleaned = _NOT_BASE64.sub(b"", raw)
    if len(cleaned) % 4 == 1:  # a lone trailing character carries no whole byte
        cleaned = cleaned[:-1]
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        return None


def image_size_from_data_uri(uri: str) -> Size | None:
    """``(width, height)`` of the image in a ``data:`` URI (base64 or percent-encoded), or None."""
    if uri[:5].lower() != "data:":
        return None
    comma = uri.find(",", 5, _MAX_HEADER_CHARS)
    if comma < 0:
        return None
    media = uri[5:comma].lower()
    payload = uri[comma + 1 : comma + 1 + MAX_PREFIX_CHARS]
    head = _decode_base64_prefix(payload) if media.endswith(";base64") else unquote_to_bytes(payload)
    return image_size_from_bytes(head) if head else None
