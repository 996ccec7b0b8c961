"""Example bodies the OpenAPI schema shows (and that API fuzzing replays as known-good input)."""

from __future__ import annotations

from typing import Any

JOB_EXAMPLES: dict[str, dict[str, Any]] = {
    "chat": {
        "summary": "A chat completion, with metadata and a priority",
        "value": {
            "kind": "chat",
            "request": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Say hi"}],
                "max_tokens": 50,
            },
            "metadata": {"customer": "acme", "run": "2025-06-01"},
            "priority": 10,
        },
    },
    "chat_with_webhook": {
        "summary": "A chat completion whose result is posted to a webhook",
        "value": {
            "kind": "chat",
            "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]},
            "webhook_url": "https://example.com/batchery-hook",
        },
    },
    "vision": {
        "summary": "A question about an image",
        "value": {
            "kind": "vision",
            "request": {
                "model": "gpt-4o",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in this image?"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
                            },
                        ],
                    }
                ],
            },
        },
    },
    "embedding": {
        "summary": "Embeddings of two texts",
        "value": {
            "kind": "embedding",
            "request": {"model": "text-embedding-3-small", "input": ["one", "two"]},
        },
    },
    "image": {
        "summary": "An image generation",
        "value": {
            "kind": "image",
            "request": {"model": "gpt-image-1", "prompt": "a red square", "size": "1024x1024"},
        },
    },
}
