"""Standard Webhooks signing: the spec's test vector, several secrets, and the headers of an attempt."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook

from config.webhook_settings import decode_secret
from workers.webhook_signing import sign, signature_header, webhook_headers

pytestmark = pytest.mark.unit

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER_SECRET = "whsec_" + "c2Vjb25kLWtleS1mb3Itcm90YXRpb24tdGVzdHM="


def test_the_specs_test_vector() -> None:
    assert sign(decode_secret(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_every_secret_signs_so_either_key_verifies_during_a_rotation() -> None:
    keys = [decode_secret(SPEC_SECRET), decode_secret(OTHER_SECRET)]
    now = int(time.time())
    header = signature_header(keys, SPEC_ID, now, SPEC_BODY)
    parts = header.split(" ")
    assert len(parts) == 2 and all(part.startswith("v1,") for part in parts)
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(now), "webhook-signature": header}
    for secret in (SPEC_SECRET, OTHER_SECRET):
        assert Webhook(secret).verify(SPEC_BODY, headers) == {"test": 2432232314}


def test_headers_keep_the_id_and_change_timestamp_and_signature() -> None:
    keys = [decode_secret(SPEC_SECRET)]
    first = webhook_headers(keys, "evt_1", 1_700_000_000, b"{}")
    second = webhook_headers(keys, "evt_1", 1_700_000_005, b"{}")
    assert first["webhook-id"] == second["webhook-id"] == "evt_1"
    assert first["webhook-timestamp"] != second["webhook-timestamp"]
    assert first["webhook-signature"] != second["webhook-signature"]
    assert first["content-type"] == "application/json"
