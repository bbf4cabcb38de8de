"""The delivery log: search, counts per channel and status, and retrying dead letters by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, NotFound
from jingwei.org.scope import Actor

from ..models import Delivery, DeliveryStatus
from .rules import MANAGE


def deliveries_search(
    actor: Actor,
    *,
    channel: str = "",
    status: str = "",
    event: str = "",
    q: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Delivery]:
    actor.require_tenant_wide(MANAGE)
    rows = Delivery.objects.filter(tenant_id=actor.tenant_id).select_related("event")
    if channel:
        rows = rows.filter(channel=channel)
    if status:
        rows = rows.filter(status=status)
    if event:
        rows = rows.filter(event__name=event)
    if q:
        rows = rows.filter(
            Q(recipient_name__icontains=q)
            | Q(address__icontains=q)
            | Q(title__icontains=q)
            | Q(last_error__icontains=q)
        )
    if since:
        rows = rows.filter(created_at__gte=since)
    if until:
        rows = rows.filter(created_at__lt=until)
    return rows


def deliveries_stats(actor: Actor, **filters: Any) -> list[dict[str, Any]]:
    rows = deliveries_search(actor, **filters).order_by()
    counts = rows.values("channel", "status").annotate(count=Count("id"))
    return [dict(row) for row in counts.order_by("channel", "status")]


def delivery_retry(*, actor: Actor, delivery_id: int) -> Delivery:
    """Send a dead letter again: back to pending with fresh attempts, due now."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        row = (
            Delivery.objects.select_for_update()
            .filter(tenant_id=actor.tenant_id, pk=delivery_id)
            .first()
        )
        if row is None:
            raise NotFound("投递记录不存在", field="delivery_id")
        if row.status != DeliveryStatus.DEAD:
            raise Conflict("只有发送失败的记录可以重试", code="not_dead", field="delivery_id")
        row.status, row.attempts, row.not_before = DeliveryStatus.PENDING, 0, timezone.now()
        row.save(update_fields=["status", "attempts", "not_before"])
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.delivery.retried",
            subject=row,
            data={"channel": row.channel, "last_error": row.last_error},
        )
        return row
