"""The SSRF guard end to end: every URL in the table is refused at submission and at send time, and a
canary listening on 127.0.0.1 receives nothing; a DNS answer that changes after the check (rebinding)
never moves the connection off the checked address."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import Settings, load_settings
from domain.webhooks.repository import DeliveryClaim
from domain.webhooks.url_safety import check_url
from tests.factories import chat_request
from tests.support.webhook_receiver import receiver
from workers.safe_http import make_webhook_client, send_pinned
from workers.webhooks import WebhookDeliverer

pytestmark = pytest.mark.integration

SSRF_TABLE = [
    "http://localhost:{port}/hook",
    "http://127.1:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://0x7f000001:{port}/hook",
    "http://0.0.0.0:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://10.0.0.1:{port}/hook",
    "http://172.16.0.1:{port}/hook",
    "http://192.168.1.1:{port}/hook",
    "http://[fd00::1]:{port}/hook",
    "http://user:pass@127.0.0.1:{port}/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/_hook",
    "ftp://127.0.0.1:{port}/hook",
]


@pytest.fixture
def canary() -> Iterator[socket.socket]:
    """A listener on 127.0.0.1 that must never see a connection."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        yield sock
        with pytest.raises(BlockingIOError):
            sock.accept()


def _claim(url: str) -> DeliveryClaim:
    return DeliveryClaim(
        delivery_id="whd_1", event_id="evt_1", url=url, payload="{}", attempt=1, round_attempt=1
    )


def _settings(sqlite_url: str, redis_url: str, **values: object) -> Settings:
    return load_settings(database_url=sqlite_url, redis_url=redis_url, auth_disabled=True, **values)


def test_every_url_in_the_table_is_refused_and_the_canary_hears_nothing(
    canary: socket.socket, sqlite_url: str, redis_url: str
) -> None:
    port = canary.getsockname()[1]
    urls = [template.format(port=port) for template in SSRF_TABLE]
    settings = _settings(sqlite_url, redis_url)
    with make_webhook_client(2.0) as client:
        deliverer = WebhookDeliverer(settings, sessions=None, client=client)  # type: ignore[arg-type]
        for url in urls:
            outcome = deliverer.attempt(_claim(url))
            assert not outcome.succeeded and outcome.record.status_code is None, url
            assert (outcome.record.error or "").startswith("refused: "), (url, outcome.record.error)
    with TestClient(create_app(settings)) as api:
        for url in urls:
            answer = api.post(
                "/v1/jobs", json={"kind": "chat", "request": chat_request(), "webhook_url": url}
            )
            assert answer.status_code == 422, (url, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "invalid_webhook_url" and error["param"] == "webhook_url"
            assert error["message"].startswith("webhook_url: ") and len(error["message"]) > 20


def test_an_allow_listed_loopback_receiver_is_accepted(sqlite_url: str, redis_url: str) -> None:
    settings = _settings(sqlite_url, redis_url, webhook_allowed_networks=["127.0.0.1/32"])
    with TestClient(create_app(settings)) as api:
        body = {"kind": "chat", "request": chat_request(), "webhook_url": "http://127.0.0.1:9/hook"}
        assert api.post("/v1/jobs", json=body).status_code == 202
        body["webhook_url"] = "http://127.0.0.2:9/hook"
        assert api.post("/v1/jobs", json=body).json()["error"]["code"] == "invalid_webhook_url"


class FlippingResolver:
    """Answers ``first`` once, then ``then`` forever: a name rebinding after it was checked."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first, then]
        self.calls = 0

    def __call__(self, host: str, port: int) -> Sequence[str]:
        answer = self.answers[min(self.calls, 1)]
        self.calls += 1
        return [answer]


def test_rebinding_to_loopback_after_the_check_connects_only_to_the_checked_address(
    sqlite_url: str, redis_url: str
) -> None:
    with receiver(host="127.0.0.2") as (base, script):
        port = int(base.rsplit(":", 1)[1])
        with socket.socket() as canary:
            canary.bind(("127.0.0.1", port))
            canary.listen(16)
            canary.setblocking(False)
            resolver = FlippingResolver("127.0.0.2", "127.0.0.1")
            settings = _settings(
                sqlite_url, redis_url, webhook_allowed_networks=["127.0.0.2/32"], webhook_secrets=[]
            )
            with make_webhook_client(2.0) as client:
                deliverer = WebhookDeliverer(settings, None, client, resolver=resolver)  # type: ignore[arg-type]
                first = deliverer.attempt(_claim(f"http://rebind.test:{port}/hook"))
                second = deliverer.attempt(_claim(f"http://rebind.test:{port}/hook"))
            with pytest.raises(BlockingIOError):
                canary.accept()
    assert first.succeeded and first.record.status_code == 200
    assert not second.succeeded and "127.0.0.1" in (second.record.error or "")  # re-checked at send time
    assert resolver.calls == 2  # once per attempt
    [request] = script.received
    assert request.headers["host"] == f"rebind.test:{port}"


def test_https_keeps_host_and_sni_while_connecting_to_the_checked_public_address() -> None:
    seen: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    resolver = FlippingResolver("93.184.216.34", "127.0.0.1")
    checked = check_url("https://hooks.example.com/in", resolver=resolver)
    with make_webhook_client(2.0, transport=httpx.MockTransport(transport)) as client:
        response = send_pinned(client, checked, "POST", {"content-type": "application/json"}, b"{}")
    assert response.status_code == 204 and resolver.calls == 1
    [request] = seen
    assert request.url.host == "93.184.216.34" and request.url.scheme == "https"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
