"""Writing to a customer's timeline from inside the product (follow-ups, ownership changes, tags,
tickets). Outside touchpoints arrive through the ingest service instead, with their own ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..models import CustomerEvent
from .common import survivor_id


def event_record(
    *,
    tenant_id: int,
    customer_id: int,
    kind: str,
    title: str,
    occurred_at: datetime,
    data: dict[str, Any] | None = None,
    channel: str = "",
    amount: Decimal | None = None,
    event_id: str | None = None,
) -> CustomerEvent:
    """Add one event to the customer's timeline, in the caller's transaction. `event_id` makes
    it idempotent for a caller that may repeat itself (e.g. `ticket:<id>:closed`); without one,
    the event gets a fresh id of its own. An event for a merged customer lands on the customer it
    was merged into (where its timeline now is)."""
    fields = {
        "customer_id": survivor_id(tenant_id, customer_id) or customer_id,
        "kind": kind,
        "title": title[:200],
        "occurred_at": occurred_at,
        "data": data or {},
        "channel": channel,
        "amount": amount,
    }
    if event_id is None:
        return CustomerEvent.objects.create(
            tenant_id=tenant_id, event_id=f"jw:{uuid.uuid4().hex}", **fields
        )
    event, _ = CustomerEvent.objects.get_or_create(
        tenant_id=tenant_id, event_id=event_id, defaults=fields
    )
    return event


@dataclass(frozen=True)
class EventDraft:
    """One timeline event to write with `events_record_many` (the customer must be active)."""

    customer_id: int
    kind: str
    title: str
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    channel: str = ""
    amount: Decimal | None = None


def events_record_many(
    *, tenant_id: int, events: Iterable[EventDraft], batch_size: int = 2000
) -> int:
    """Write many timeline events at once, each with a fresh id (a batch job's changes: one
    INSERT per `batch_size` events instead of one per event)."""
    rows = [
        CustomerEvent(
            tenant_id=tenant_id,
            event_id=f"jw:{uuid.uuid4().hex}",
            customer_id=e.customer_id,
            kind=e.kind,
            title=e.title[:200],
            occurred_at=e.occurred_at,
            data=e.data,
            channel=e.channel,
            amount=e.amount,
        )
        for e in events
    ]
    CustomerEvent.objects.bulk_create(rows, batch_size=batch_size)
    return len(rows)
