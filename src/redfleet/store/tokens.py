"""API tokens for ``redfleet serve`` (owner: serve): people and scripts (roles viewer < operator < admin) and
per-node agent tokens (role ``agent``, bound to one node). Only a SHA-256 of each token is stored; the token
itself is shown once, when it is created."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from redfleet.store.base import Base
from redfleet.store.models import UTCDateTime, utcnow

ROLES = ("viewer", "operator", "admin")
AGENT_ROLE = "agent"
RANK = {"viewer": 1, "operator": 2, "admin": 3}
PREFIX = "rft_"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    node: Mapped[str | None] = mapped_column(String(200), index=True)  # agent tokens: the one node it speaks for
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str
    node: str | None
    created_at: datetime
    revoked: bool


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _info(r: ApiToken) -> TokenInfo:
    return TokenInfo(r.id, r.name, r.role, r.node, r.created_at, r.revoked_at is not None)


def create_token(session: Session, name: str, role: str, *, node: str | None = None,
                 token: str | None = None) -> tuple[str, TokenInfo]:
    """Create a token (a fresh random one unless ``token`` is given). Returns (token, info)."""
    if role not in (*ROLES, AGENT_ROLE):
        raise ValueError(f"role must be one of {', '.join((*ROLES, AGENT_ROLE))}, not {role!r}")
    if role == AGENT_ROLE and not node:
        raise ValueError("an agent token needs the node it speaks for")
    token = token or new_token()
    row = ApiToken(name=name, role=role, node=node, digest=digest(token), created_at=utcnow())
    session.add(row)
    session.flush()
    return token, _info(row)


def lookup(session: Session, token: str) -> TokenInfo | None:
    row = session.scalar(select(ApiToken).where(ApiToken.digest == digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return _info(row)


def list_tokens(session: Session) -> list[TokenInfo]:
    return [_info(r) for r in session.scalars(select(ApiToken).order_by(ApiToken.id)).all()]


def revoke(session: Session, name: str) -> bool:
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def any_admin(session: Session) -> bool:
    return session.scalar(select(ApiToken.id).where(ApiToken.role == "admin", ApiToken.revoked_at.is_(None))
                          .limit(1)) is not None
