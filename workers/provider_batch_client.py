"""The provider's Batch API, as batchery calls it: ``/v1/files`` (upload, list, content) and
``/v1/batches`` (create, list, retrieve, cancel), on OpenAI's formats.

Errors are the live client's (``workers.upstream``): a timeout, a connection error, or the provider's
error status with its body. The key travels in headers only, never in an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from config.providers import Provider
from workers.upstream import (
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamMalformed,
    UpstreamTimeout,
    json_object,
)

LIST_PAGES = 50
"""How many pages a reconciliation reads before it concludes that an object is not there."""


class BatchApiClient:
    """One provider's Files and Batches endpoints, on a shared ``httpx.Client``."""

    def __init__(self, client: httpx.Client, provider: Provider, *, timeout: float = 60.0) -> None:
        self.client = client
        self.provider = provider
        self.timeout = timeout

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.provider.request_headers(), **kwargs.pop("headers", {})}
        params = {**self.provider.query_params(), **kwargs.pop("params", {})}
        try:
            response = self.client.request(
                method,
                self.provider.base_url + path,
                headers=headers,
                params=params,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                **kwargs,
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"no answer within {self.timeout:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectionError(f"could not reach the provider ({type(exc).__name__})") from exc
        if not response.is_success:
            raise UpstreamHTTPError(
                response.status_code,
                headers=response.headers,
                body=json_object(response),
                text=response.text[:2000],
            )
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, path, **kwargs)
        parsed = json_object(response)
        if parsed is None:
            raise UpstreamMalformed(headers=response.headers)
        return parsed

    def upload(self, filename: str, content: bytes) -> str:
        """Upload a ``purpose=batch`` JSONL file; returns its id."""
        files = {"file": (filename, content, "application/jsonl")}
        answer = self._json("POST", "/files", data={"purpose": "batch"}, files=files)
        return str(answer["id"])

    def find_file(self, filename: str) -> str | None:
        """The id of a ``purpose=batch`` file named ``filename``, newest first, or None."""
        for item in self._pages("/files", {"purpose": "batch", "order": "desc", "limit": 10000}):
            if item.get("filename") == filename:
                return str(item["id"])
        return None

    def create_batch(self, input_file_id: str, endpoint: str, metadata: dict[str, str]) -> dict[str, Any]:
        body = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
            "metadata": metadata,
        }
        return self._json("POST", "/batches", json=body)

    def find_batch(self, key: str, value: str) -> dict[str, Any] | None:
        """The newest batch whose metadata has ``key`` = ``value``, or None."""
        for item in self._pages("/batches", {"limit": 100}):
            metadata = item.get("metadata")
            if isinstance(metadata, dict) and metadata.get(key) == value:
                return item
        return None

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self._json("GET", f"/batches/{batch_id}")

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return self._json("POST", f"/batches/{batch_id}/cancel")

    def content(self, file_id: str) -> bytes:
        return self._send("GET", f"/files/{file_id}/content").content

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        after: str | None = None
        for _ in range(LIST_PAGES):
            page = self._json("GET", path, params={**params, **({"after": after} if after else {})})
            data = page.get("data")
            items = [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
            yield from items
            if not page.get("has_more") or not items:
                return
            after = str(items[-1].get("id"))
