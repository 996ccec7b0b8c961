"""``batchery submit``: post one job from arguments or stdin; ``--wait`` prints its result."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import httpx

from config.errors import BatcheryError


class CliError(BatcheryError):
    """The command could not do what was asked."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("submit", help="submit a job (request JSON from --request, --prompt or stdin)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="batchery API base URL")
    parser.add_argument(
        "--kind", choices=["chat", "vision", "embedding", "image", "response"], default="chat"
    )
    parser.add_argument("--model", help="model (overrides the request's)")
    parser.add_argument("--prompt", help="chat message, embedding input or image prompt")
    parser.add_argument("--request", help="the OpenAI request body as JSON ('-' reads stdin)")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--webhook-url")
    parser.add_argument("--api-key", help="batchery API key")
    parser.add_argument("--wait", action="store_true", help="poll until the job finishes; print its result")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits")
    parser.set_defaults(handler=run_submit)


def build_request(args: argparse.Namespace, stdin_text: str | None) -> dict[str, Any]:
    raw = args.request
    if raw == "-" or (raw is None and args.prompt is None):
        raw = stdin_text if stdin_text is not None else sys.stdin.read()
    body: dict[str, Any]
    if raw is not None:
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CliError(f"--request: not valid JSON ({exc.msg} at position {exc.pos})") from exc
        if not isinstance(decoded, dict):
            raise CliError("--request: must be a JSON object")
        body = decoded
    elif args.kind == "embedding":
        body = {"input": args.prompt}
    elif args.kind == "image":
        body = {"prompt": args.prompt}
    elif args.kind == "response":
        body = {"input": args.prompt}
    else:
        body = {"messages": [{"role": "user", "content": args.prompt}]}
    if args.model:
        body["model"] = args.model
    if "model" not in body:
        raise CliError("--model is required unless the request names one")
    return body


def run_submit(args: argparse.Namespace, stdin_text: str | None = None) -> int:
    payload: dict[str, Any] = {"kind": args.kind, "request": build_request(args, stdin_text)}
    if args.priority:
        payload["priority"] = args.priority
    if args.webhook_url:
        payload["webhook_url"] = args.webhook_url
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30.0) as client:
        try:
            response = client.post("/v1/jobs", json=payload)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {args.url}: {type(exc).__name__}") from exc
        job = response.json()
        if response.status_code >= 400:
            print(json.dumps(job, indent=2), file=sys.stderr)
            return 1
        if not args.wait:
            print(json.dumps(job, indent=2))
            return 0
        deadline = time.monotonic() + args.timeout
        while job.get("status") in ("queued", "running"):
            if time.monotonic() > deadline:
                raise CliError(f"job {job['id']} still {job['status']} after {args.timeout:g}s")
            time.sleep(0.5)
            job = client.get(f"/v1/jobs/{job['id']}").json()
    print(json.dumps(job, indent=2))
    return 0 if job.get("status") == "succeeded" else 1
