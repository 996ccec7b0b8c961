"""Image dimensions from ``data:`` URLs, as the upstream reads them: the header is parsed by
``domain.tokens.image_size`` (PNG, JPEG, GIF, WEBP), and data that is not base64 is refused, as OpenAI does.

Only a prefix of a data URL is decoded (enough for any header but a JPEG with a huge metadata block);
an image whose size cannot be read is treated by the caller as 1024x1024.
"""

from __future__ import annotations

import base64
import binascii

from domain.tokens.image_size import image_size_from_bytes

_PREFIX_CHARS = 96 * 1024  # base64 characters decoded from a data URL (a multiple of 4)


class BadImageDataError(ValueError):
    """The data URL is not valid base64 image data."""


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
    return image_size_from_bytes(data)
