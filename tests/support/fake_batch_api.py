"""An in-memory OpenAI Batch API (``/files`` and ``/batches``) behind ``httpx.MockTransport``, for the
provider batch runner's integration tests. A test decides when and how each batch ends."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]] | None]
"""A line's answer: (status code, body), or None to leave it unanswered."""


def chat_completion(line: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    body = {"id": f"chatcmpl-{line['custom_id']}", "object": "chat.completion", "choices": [], "usage": usage}
    return 200, body


@dataclass
class FakeBatchApi:
    """Files and batches in memory; ``lose_next_upload_answer`` stores an upload but cuts its answer."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: int = 0
    creates: int = 0
    cancels: int = 0
    lose_next_upload_answer: bool = False
    lose_next_create_answer: bool = False
    refuse_creates: bool = False

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        if request.headers.get("authorization") != "Bearer sk-test-provider":
            return httpx.Response(401, json={"error": {"message": "no key", "type": "invalid_request_error"}})
        if path == "/files" and request.method == "POST":
            return self._upload(request)
        if path == "/files":
            data = [
                {"id": key, "object": "file", "filename": name, "purpose": "batch"}
                for key, (name, _) in self.files.items()
            ]
            return httpx.Response(200, json={"object": "list", "data": data[::-1], "has_more": False})
        if path.startswith("/files/") and path.endswith("/content"):
            return httpx.Response(200, content=self.files[path.split("/")[2]][1])
        if path == "/batches" and request.method == "POST":
            return self._create(json.loads(request.content))
        if path == "/batches":
            return httpx.Response(
                200, json={"object": "list", "data": list(self.batches.values())[::-1], "has_more": False}
            )
        if path.endswith("/cancel"):
            batch = self.batches[path.split("/")[2]]
            self.cancels += 1
            batch["status"] = "cancelling"
            return httpx.Response(200, json=batch)
        return httpx.Response(200, json=self.batches[path.split("/")[2]])

    def _upload(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        name = body.split(b'filename="', 1)[1].split(b'"', 1)[0].decode()
        content = body.split(b"\r\n\r\n", 2)[-1].rsplit(b"\r\n--", 1)[0]
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = (name, content)
        self.uploads += 1
        if self.lose_next_upload_answer:
            self.lose_next_upload_answer = False
            raise httpx.ReadError("connection reset after the upload", request=request)
        return httpx.Response(
            200, json={"id": file_id, "object": "file", "filename": name, "purpose": "batch"}
        )

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        if self.refuse_creates:
            error = {"message": "enqueued token limit reached", "type": "invalid_request_error"}
            return httpx.Response(400, json={"error": error})
        batch_id = f"batch_{len(self.batches) + 1}"
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "metadata": body.get("metadata"),
            "output_file_id": None,
            "error_file_id": None,
        }
        self.creates += 1
        if self.lose_next_create_answer:
            self.lose_next_create_answer = False
            return httpx.Response(502, json={"error": {"message": "bad gateway", "type": "server_error"}})
        return httpx.Response(200, json=self.batches[batch_id])

    def lines(self, batch_id: str) -> list[dict[str, Any]]:
        content = self.files[self.batches[batch_id]["input_file_id"]][1]
        return [json.loads(line) for line in content.splitlines() if line.strip()]

    def finish(self, batch_id: str, answer: Answer = chat_completion, status: str = "completed") -> None:
        """End the batch with ``status``; each line answered by ``answer`` goes to the output file (2xx)
        or the error file."""
        output, errors = [], []
        for line in self.lines(batch_id):
            answered = answer(line)
            if answered is None:
                continue
            code, body = answered
            record = {
                "id": f"batch_req_{line['custom_id']}",
                "custom_id": line["custom_id"],
                "response": {"status_code": code, "request_id": "req", "body": body},
                "error": None,
            }
            (output if code < 300 else errors).append(json.dumps(record))
        batch = self.batches[batch_id]
        for name, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = (f"{batch_id}_{name}.jsonl", ("\n".join(records) + "\n").encode())
                batch[name] = file_id
        batch["status"] = status
