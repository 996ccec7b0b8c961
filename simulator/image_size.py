"""Image dimensions from ``data:`` URLs, as the upstream reads them.

The simulator is the oracle batchery's estimates are checked against, so it reads images with its
own code and shares none with ``domain``: Pillow reads PNG, JPEG and GIF headers (``Image.open`` parses
the header only and decodes nothing), and the WEBP container header, which Pillow will not open
without the whole bitstream, is read here from its RIFF chunk. Data that is not base64 is refused, as
OpenAI does.

Only a prefix of a data URL is decoded (enough for any header but a JPEG with a huge metadata block);
an image whose size cannot be read is treated by the caller as 1024x1024.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct

from PIL import Image, UnidentifiedImageError

_PREFIX_CHARS = 96 * 1024  # base64 characters decoded from a data URL (a multiple of 4)


class BadImageDataError(ValueError):
    """The data URL is not valid base64 image data."""


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    fourcc = data[12:16]
    if len(data) < (25 if fourcc == b"VP8L" else 30):
        return None
    if fourcc == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
    elif fourcc == b"VP8L" and data[20] == 0x2F:
        (packed,) = struct.unpack_from("<I", data, 21)
        width, height = (packed & 0x3FFF) + 1, ((packed >> 14) & 0x3FFF) + 1
    elif fourcc == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = (value & 0x3FFF for value in struct.unpack_from("<HH", data, 26))
    else:
        return None
    return (width, height) if width and height else None


def size_from_bytes(data: bytes) -> tuple[int, int] | None:
    """The size of a PNG, JPEG, GIF or WEBP image from its first bytes, or None."""
    if data[:4] == b"RIFF":
        return _webp_size(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        return None
    return (width, height) if width > 0 and height > 0 else None


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
