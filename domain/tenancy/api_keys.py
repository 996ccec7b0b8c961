"""API keys: issuing, checking, listing and revoking them.

A key looks like ``bk_<id>_<secret>``: the ``bk_`` prefix makes it recognisable (to people, to secret
scanners and to the log redactor), the 12-character ``id`` finds its row without a scan, and the
40-character ``secret`` carries 200 random bits.

Only ``sha256(key)`` is stored. A slow password hash (bcrypt, scrypt, argon2) exists to make guessing
*low-entropy* passwords expensive; a 200-bit random secret cannot be guessed however fast the hash is,
so a slow hash would only add milliseconds to every request. Hashes are compared with
``hmac.compare_digest``, and an unknown id is compared against a dummy hash, so the time taken does not
tell a caller whether an id exists.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from domain.errors import InvalidRequest, NotFound, Unauthenticated
from domain.ids import TENANT_NAME
from domain.storage.models import ApiKey

KEY_PREFIX = "bk_"
ID_LENGTH = 12
SECRET_LENGTH = 40
TOUCH_INTERVAL = timedelta(seconds=60)
"""``last_used_at`` is written at most once per key in this interval, so a busy key costs no writes."""

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case: 5 bits a character
_KEY_SHAPE = re.compile(rf"^bk_([{_ALPHABET}]{{{ID_LENGTH}}})_([{_ALPHABET}]{{{SECRET_LENGTH}}})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class Scope(StrEnum):
    """What a key may do. ``admin`` implies every other scope."""

    jobs_write = "jobs:write"
    jobs_read = "jobs:read"
    batches_write = "batches:write"
    batches_read = "batches:read"
    admin = "admin"


DEFAULT_SCOPES = frozenset({Scope.jobs_read, Scope.jobs_write, Scope.batches_read, Scope.batches_write})
ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's tenant and scopes (``key_id`` is None when authentication is off)."""

    tenant_id: str
    scopes: frozenset[str]
    key_id: str | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or Scope.admin in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created. ``key`` is the only copy of the secret: show it once, never store it."""

    id: str
    tenant_id: str
    scopes: frozenset[str]
    expires_at: datetime | None
    key: str


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The lookup id of a well-formed key, or None."""
    match = _KEY_SHAPE.match(key)
    return match.group(1) if match else None


def validate_tenant(name: str) -> str:
    """A tenant name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit."""
    if not TENANT_NAME.match(name):
        raise InvalidRequest(
            f"tenant {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-'", param="tenant"
        )
    return name


def parse_scopes(values: Iterable[str]) -> frozenset[str]:
    """Scopes from words separated by spaces or commas; ``all`` means every scope."""
    words = [word for value in values for word in re.split(r"[\s,]+", value) if word]
    if "all" in words:
        return ALL_SCOPES
    known = {scope.value for scope in Scope}
    unknown = sorted(set(words) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown scope {', '.join(unknown)}; known: {', '.join(scope.value for scope in Scope)}",
            param="scopes",
        )
    if not words:
        raise InvalidRequest("at least one scope is needed", param="scopes")
    return frozenset(words)


def create_key(
    session: Session,
    *,
    tenant_id: str,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    expires_at: datetime | None = None,
    name: str | None = None,
    now: datetime | None = None,
) -> IssuedKey:
    """Store a new key's hash and return the key itself (the only time it exists in full)."""
    validate_tenant(tenant_id)
    granted = parse_scopes(scopes)
    created = now or datetime.now(UTC)
    if expires_at is not None and _aware(expires_at) <= created:
        raise InvalidRequest("the expiry must be in the future", param="expires")
    key_id = _random_text(ID_LENGTH)
    key = f"{KEY_PREFIX}{key_id}_{_random_text(SECRET_LENGTH)}"
    session.add(
        ApiKey(
            id=key_id,
            tenant_id=tenant_id,
            name=name,
            key_hash=hash_key(key),
            scopes=" ".join(sorted(granted)),
            created_at=created,
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedKey(key_id, tenant_id, granted, expires_at, key)


def authenticate(session: Session, presented: str, *, now: datetime) -> Principal:
    """The principal a presented key stands for. Raises Unauthenticated (the key is never repeated)."""
    match = _KEY_SHAPE.match(presented)
    row = session.get(ApiKey, match.group(1)) if match else None
    stored = row.key_hash if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(stored, hash_key(presented)) or row is None:
        raise Unauthenticated("Incorrect API key provided.")
    if row.revoked_at is not None:
        raise Unauthenticated("This API key has been revoked.", code="api_key_revoked")
    if row.expires_at is not None and _aware(row.expires_at) <= now:
        raise Unauthenticated("This API key has expired.", code="api_key_expired")
    _touch(session, row, now)
    return Principal(tenant_id=row.tenant_id, scopes=frozenset(row.scopes.split()), key_id=row.id)


def _touch(session: Session, row: ApiKey, now: datetime) -> None:
    """Record the use, at most once per TOUCH_INTERVAL; the WHERE makes racing requests write once."""
    stale = now - TOUCH_INTERVAL
    if row.last_used_at is not None and _aware(row.last_used_at) > stale:
        return
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == row.id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= stale))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def list_keys(session: Session, *, tenant_id: str | None) -> list[ApiKey]:
    """Every key, oldest first, optionally of one tenant. Rows hold hashes only."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query))


def revoke_key(session: Session, key_or_id: str, *, now: datetime | None = None) -> ApiKey:
    """Revoke by id (or by the key itself); takes effect on the next request. Revoking twice is fine."""
    key_id = key_id_of(key_or_id) or key_or_id
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id!r}", param="id")
    if row.revoked_at is None:
        row.revoked_at = now or datetime.now(UTC)
        session.flush()
    return row


def key_state(row: ApiKey, now: datetime) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and _aware(row.expires_at) <= now:
        return "expired"
    return "active"


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
