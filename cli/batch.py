"""``batchery batch``: run a JSONL batch file through the API and follow it.

::

    batchery batch run FILE.jsonl --endpoint /v1/chat/completions [--wait] [-o results.jsonl]
    batchery batch status BATCH_ID
    batchery batch list [--limit N] [--after BATCH_ID]
    batchery batch cancel BATCH_ID
    batchery batch download BATCH_ID [-o results.jsonl]

``run --wait`` shows a live progress bar (done / total, failed, ETA) until the batch ends; ``list``
prints a table on a terminal and tab-separated lines otherwise. Results are
the batch's output lines followed by its error lines: every ``custom_id`` once. The API key comes from
``--api-key`` or ``BATCHERY_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from config.errors import BatcheryError
from domain.batches.schemas import TERMINAL

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/images/generations", "/v1/responses")


class BatchCliError(BatcheryError):
    """The batch command could not do what was asked."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("batch", help="run and follow OpenAI-format batch files")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(action: argparse.ArgumentParser) -> None:
        action.add_argument("--url", default="http://127.0.0.1:8000", help="batchery API base URL")
        action.add_argument("--api-key", default=os.environ.get("BATCHERY_API_KEY"), help="batchery API key")

    run = actions.add_parser("run", help="upload FILE and create a batch from it")
    run.add_argument("file", type=Path, help="JSONL input: one request per line")
    run.add_argument("--endpoint", required=True, choices=ENDPOINTS)
    run.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    run.add_argument("--webhook-url", help="receives batch.completed / failed / expired / cancelled")
    run.add_argument(
        "--execution",
        choices=("live", "provider_batch", "auto"),
        default="live",
        help="auto / provider_batch: through the provider's own Batch API at its batch price (default live)",
    )
    run.add_argument("--wait", action="store_true", help="follow the batch with a progress bar until it ends")
    run.add_argument("-o", "--output", type=Path, help="with --wait: write the results here")
    run.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
    common(run)
    run.set_defaults(handler=run_batch)

    for name, handler, text in (
        ("status", show_status, "print a batch"),
        ("cancel", cancel_batch, "cancel a batch; finished results stay downloadable"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("batch_id")
        common(action)
        action.set_defaults(handler=handler)

    listing = actions.add_parser("list", help="list batches, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--after", help="the last id of the previous page")
    common(listing)
    listing.set_defaults(handler=list_batches)

    download = actions.add_parser("download", help="write a batch's results (output, then error lines)")
    download.add_argument("batch_id")
    download.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    common(download)
    download.set_defaults(handler=download_results)


def _client(args: argparse.Namespace) -> httpx.Client:
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    return httpx.Client(base_url=args.url, headers=headers, timeout=httpx.Timeout(60.0, connect=10.0))


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise BatchCliError(f"cannot reach {client.base_url}: {type(exc).__name__}") from exc
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = {"error": {"message": response.text[:500]}}
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise BatchCliError(f"{method} {path} answered {response.status_code}: {error.get('message', body)}")
    return dict(body)


def _metadata(pairs: list[str]) -> dict[str, str] | None:
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BatchCliError(f"--metadata: expected KEY=VALUE, got {pair!r}")
        result[key] = value
    return result or None


def run_batch(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise BatchCliError(f"no such file: {args.file}")
    if args.output and not args.wait:
        raise BatchCliError("-o/--output needs --wait (or use 'batchery batch download' later)")
    with _client(args) as client, args.file.open("rb") as handle:
        uploaded = _call(
            client, "POST", "/v1/files", files={"file": (args.file.name, handle)}, data={"purpose": "batch"}
        )
        payload: dict[str, Any] = {
            "input_file_id": uploaded["id"],
            "endpoint": args.endpoint,
            "completion_window": "24h",
        }
        if metadata := _metadata(args.metadata):
            payload["metadata"] = metadata
        if args.webhook_url:
            payload["webhook_url"] = args.webhook_url
        if args.execution != "live":
            payload["execution"] = args.execution
        batch = _call(client, "POST", "/v1/batches", json=payload)
        print(batch["id"])
        if not args.wait:
            return 0
        batch = follow(client, batch["id"], poll=args.poll)
        _report(batch)
        if args.output:
            with args.output.open("wb") as out:
                _write_results(client, batch, out)
    return 0 if batch["status"] == "completed" else 1


def follow(
    client: httpx.Client, batch_id: str, *, poll: float, console: Console | None = None
) -> dict[str, Any]:
    """Poll the batch until it ends, drawing its progress; returns the final batch."""
    console = console or Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("validating", total=None, failed=0)
        while True:
            batch = _call(client, "GET", f"/v1/batches/{batch_id}")
            counts = batch.get("request_counts") or {}
            done = int(counts.get("completed", 0)) + int(counts.get("failed", 0))
            total = int(counts.get("total", 0)) or None
            progress.update(
                task, description=batch["status"], total=total, completed=done, failed=counts.get("failed", 0)
            )
            if batch["status"] in TERMINAL:
                return batch
            time.sleep(poll)


def _report(batch: dict[str, Any]) -> None:
    counts = batch.get("request_counts") or {}
    print(
        f"{batch['id']}: {batch['status']}, {counts.get('completed', 0)} completed, "
        f"{counts.get('failed', 0)} failed of {counts.get('total', 0)}",
        file=sys.stderr,
    )
    for error in ((batch.get("errors") or {}).get("data") or [])[:20]:
        print(f"  line {error.get('line')}: {error.get('code')}: {error.get('message')}", file=sys.stderr)


def _write_results(client: httpx.Client, batch: dict[str, Any], out: IO[bytes]) -> int:
    """Stream the output file, then the error file, into ``out``; returns the bytes written."""
    written = 0
    for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
        if not file_id:
            continue
        try:
            with client.stream("GET", f"/v1/files/{file_id}/content") as response:
                if response.status_code >= 400:
                    response.read()
                    raise BatchCliError(
                        f"cannot download {file_id}: {response.status_code} {response.text[:200]}"
                    )
                for piece in response.iter_bytes():
                    out.write(piece)
                    written += len(piece)
        except httpx.HTTPError as exc:
            raise BatchCliError(f"download of {file_id} failed: {type(exc).__name__}") from exc
    return written


def show_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        batch = _call(client, "GET", f"/v1/batches/{args.batch_id}")
    print(json.dumps(batch, indent=2))
    return 0


def cancel_batch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        batch = _call(client, "POST", f"/v1/batches/{args.batch_id}/cancel")
    print(json.dumps(batch, indent=2))
    return 0


def list_batches(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.after:
        params["after"] = args.after
    with _client(args) as client:
        page = _call(client, "GET", "/v1/batches", params=params)
    header = ("id", "status", "endpoint", "completed", "failed", "total", "created")
    rows = []
    for batch in page.get("data", []):
        counts = batch.get("request_counts") or {}
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(batch.get("created_at", 0)))
        rows.append(
            (
                batch["id"],
                batch["status"],
                batch["endpoint"],
                str(counts.get("completed", 0)),
                str(counts.get("failed", 0)),
                str(counts.get("total", 0)),
                created,
            )
        )
    if sys.stdout.isatty():
        table = Table(*header)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:  # tab-separated for scripts
        print("\t".join(header))
        for row in rows:
            print("\t".join(row))
    if page.get("has_more"):
        print(f"more: --after {page.get('last_id')}")
    return 0


def download_results(args: argparse.Namespace) -> int:
    with _client(args) as client:
        batch = _call(client, "GET", f"/v1/batches/{args.batch_id}")
        if not batch.get("output_file_id") and not batch.get("error_file_id"):
            raise BatchCliError(f"batch {args.batch_id} is {batch['status']} and has no results yet")
        if args.output:
            with args.output.open("wb") as out:
                _write_results(client, batch, out)
        else:
            _write_results(client, batch, sys.stdout.buffer)
            sys.stdout.flush()
    return 0
