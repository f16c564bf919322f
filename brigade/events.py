"""The shape of an outbox event as handlers see it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Event(BaseModel):
    """One message of the brigade_events queue."""

    msg_id: int
    attempt: int = Field(description="1 on the first delivery, 2 on the first retry, ...")
    topic: str
    business_id: uuid.UUID | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    emitted_at: datetime | None = None
    enqueued_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Event":
        message = row["message"]
        return cls(
            msg_id=row["msg_id"],
            attempt=row["read_ct"],
            topic=message.get("topic", ""),
            business_id=message.get("business_id"),
            payload=message.get("payload") or {},
            emitted_at=message.get("emitted_at"),
            enqueued_at=row.get("enqueued_at"),
        )
