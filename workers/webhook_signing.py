"""Standard Webhooks signing: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.

The signed content is ``f"{id}.{timestamp}.{body}"`` over the exact bytes sent, with HMAC-SHA256 and the
key bytes of a ``whsec_<base64>`` secret. With several secrets configured (a rotation in progress) each
one signs, and the header lists every ``v1,<base64>`` signature separated by spaces, so a receiver that
knows either key accepts the message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """Every key's signature, space-separated, in the order the keys are configured."""
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def webhook_headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: the id stays the same on every retry; timestamp and signature are new."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, msg_id, timestamp, body),
    }
