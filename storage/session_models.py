"""Server-side web sessions (issue 18): the signed cookie names a row here, and a session is
only good while its row is — logout, a role change, deactivation or an admin ending it revokes
the row at once, whatever the cookie still says."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from storage.models import ts


class WebSession(SQLModel, table=True):
    __tablename__ = "web_sessions"
    nonce: str = Field(primary_key=True)  # the cookie's random nonce (CSRF is bound to it)
    user_id: int = Field(foreign_key="users.id", index=True)
    via: str = ""  # demo | wecom | dingtalk | feishu
    created_at: datetime = ts()
    expires_at: datetime = ts(default=False)
    revoked_at: datetime | None = ts(nullable=True)
