"""Factories for jobs and request bodies."""

from __future__ import annotations

from typing import Any

from domain.jobs.repository import NewJob

PNG_1x1 = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def chat_request(model: str = "gpt-4o-mini", prompt: str = "Say hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16, **extra}


def vision_request(model: str = "gpt-4o", url: str = PNG_1x1) -> dict[str, Any]:
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 16}


def embedding_request(model: str = "text-embedding-3-small", text: str = "hello world") -> dict[str, Any]:
    return {"model": model, "input": text}


def image_request(model: str = "gpt-image-1", prompt: str = "a red square") -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "size": "1024x1024", "quality": "low"}


def response_request(model: str = "gpt-4o-mini", text: str = "Say hello") -> dict[str, Any]:
    return {"model": model, "input": text, "max_output_tokens": 16}


REQUESTS = {
    "chat": chat_request,
    "vision": vision_request,
    "embedding": embedding_request,
    "image": image_request,
    "response": response_request,
}


def new_job(kind: str = "chat", tier: str = "standard", **overrides: Any) -> NewJob:
    request = REQUESTS[kind]()
    values: dict[str, Any] = {
        "kind": kind,
        "model": request["model"],
        "tier": tier,
        "request": request,
        "estimated_tokens": 40,
        "tenant_id": "default",
    }
    values.update(overrides)
    return NewJob(**values)
