from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from jingwei.core.errors import NotFound

from ..models import Notification, Severity


def notification_send(
    *,
    tenant_id: int,
    recipient_ids: Iterable[int],
    kind: str,
    title: str,
    body: str = "",
    severity: str = Severity.INFO,
    data: dict[str, Any] | None = None,
) -> list[Notification]:
    """Put a notification in each recipient's in-app inbox (within the caller's transaction)."""
    rows = [
        Notification(
            tenant_id=tenant_id,
            recipient_id=rid,
            kind=kind,
            title=title,
            body=body,
            severity=severity,
            data=data or {},
        )
        for rid in sorted(set(recipient_ids))
    ]
    return Notification.objects.bulk_create(rows)


def inbox(*, tenant_id: int, employee_id: int) -> Any:
    return Notification.objects.filter(tenant_id=tenant_id, recipient_id=employee_id)


def notification_mark_read(
    *, tenant_id: int, employee_id: int, notification_id: int
) -> Notification:
    row = inbox(tenant_id=tenant_id, employee_id=employee_id).filter(pk=notification_id).first()
    if row is None:
        raise NotFound("通知不存在")
    if row.read_at is None:
        row.read_at = timezone.now()
        row.save(update_fields=["read_at"])
    return row


def inbox_mark_all_read(*, tenant_id: int, employee_id: int) -> int:
    return (
        inbox(tenant_id=tenant_id, employee_id=employee_id)
        .filter(read_at__isnull=True)
        .update(read_at=timezone.now())
    )
