"""``batchery keys``: create, list and revoke API keys.

``keys create`` prints the key alone on stdout (so ``KEY=$(batchery keys create --tenant acme)``
works) and what it is on stderr; the key is never shown again. ``keys list`` never shows keys.
``keys revoke`` takes effect on the very next request: the API reads the key's row every time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.command_session import command_session
from config.errors import BatcheryError
from domain.tenancy import api_keys
from domain.tenancy.api_keys import DEFAULT_SCOPES, Scope

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class KeysError(BatcheryError):
    """The keys command could not do what was asked."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("keys", help="create, list and revoke API keys")
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--tenant", required=True, help="the tenant the key acts for")
    create.add_argument(
        "--scopes",
        nargs="+",
        action="extend",
        metavar="SCOPE",
        help=f"any of {', '.join(s.value for s in Scope)}, or all "
        f"(default: {' '.join(sorted(DEFAULT_SCOPES))})",
    )
    create.add_argument(
        "--expires", help="30d, 12h, 90m, 2w, or a date/time such as 2026-01-31 (default: never)"
    )
    create.add_argument("--name", help="a label to recognise the key by")
    create.set_defaults(handler=run_create)

    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per key")
    listing.set_defaults(handler=run_list)

    revoke = actions.add_parser("revoke", help="revoke keys by id; they stop working at once")
    revoke.add_argument("ids", nargs="+", metavar="ID")
    revoke.set_defaults(handler=run_revoke)


def parse_expiry(text: str | None, now: datetime) -> datetime | None:
    """``None``/``never``, a duration (``30d``), or an ISO date or date-time (UTC unless it says)."""
    if text is None or text.strip().lower() in ("", "never"):
        return None
    value = text.strip()
    match = _DURATION.match(value)
    if match:
        return now + int(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise KeysError(
            f"--expires: {text!r} is neither a duration like 30d nor a date like 2026-01-31"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run_create(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    expires_at = parse_expiry(args.expires, now)
    with command_session(KeysError) as session:
        issued = api_keys.create_key(
            session,
            tenant_id=args.tenant,
            scopes=args.scopes or DEFAULT_SCOPES,
            expires_at=expires_at,
            name=args.name,
            now=now,
        )
    expiry = f"expires {_when(issued.expires_at)}" if issued.expires_at else "never expires"
    print(issued.key, flush=True)
    print(
        f"created key {issued.id} for tenant {issued.tenant_id} "
        f"(scopes: {' '.join(sorted(issued.scopes))}; {expiry}).\n"
        "It is shown only this once: store it now. Send it as 'Authorization: Bearer <key>'.",
        file=sys.stderr,
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with command_session(KeysError) as session:
        rows = [_row(key, now) for key in api_keys.list_keys(session, tenant_id=args.tenant)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    columns = ["id", "tenant", "scopes", "created", "last_used", "expires", "state", "name"]
    table = [[str(row[column] if row[column] is not None else "-") for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in table)]) for i, column in enumerate(columns)]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)))
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with command_session(KeysError) as session:
        for key_id in args.ids:
            row = api_keys.revoke_key(session, key_id, now=now)
            print(f"revoked key {row.id} (tenant {row.tenant_id})")
    return 0


def _row(key: Any, now: datetime) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant_id,
        "scopes": ",".join(key.scopes.split()),
        "created": _when(key.created_at),
        "last_used": _when(key.last_used_at),
        "expires": _when(key.expires_at),
        "state": api_keys.key_state(key, now),
        "name": key.name,
    }


def _when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
