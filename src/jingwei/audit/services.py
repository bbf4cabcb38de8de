"""Recording what happened, and the export guard.

`audit_record` is called by every service that writes, inside its transaction, so the event and
the change commit together. Before/after are plain JSON snapshots of the fields that matter.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Sum
from django.utils import timezone

from jingwei.core.errors import Forbidden, NotFound
from jingwei.org.scope import Actor

from .models import AuditEvent, ExportRecord

SECRET_FIELDS = {"password", "digest"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(instance: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The row's concrete fields as JSON (foreign keys as ids), secrets left out."""
    wanted = set(fields) if fields is not None else None
    out: dict[str, Any] = {}
    for f in instance._meta.concrete_fields:
        if f.name in SECRET_FIELDS or (wanted is not None and f.name not in wanted):
            continue
        out[f.attname if f.is_relation else f.name] = _jsonable(getattr(instance, f.attname))
    return out


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in after.items() if before.get(k) != v}


def audit_record(
    *,
    actor: Actor | None,
    tenant_id: int,
    action: str,
    subject: models.Model | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Write one audit event in the caller's transaction. `actor` None means the system did it."""
    department_id, region_id = subject_location(subject)
    return AuditEvent.objects.create(
        tenant_id=tenant_id,
        at=timezone.now(),
        actor_id=actor.employee_id if actor else None,
        actor_name=actor.name if actor else "系统",
        department_id=department_id,
        region_id=region_id,
        action=action,
        subject_type=subject._meta.label_lower if subject is not None else "",
        subject_id=str(subject.pk) if subject is not None else "",
        subject_label=str(subject)[:200] if subject is not None else "",
        before=before,
        after=after,
        data=data or {},
        ip=ip,
    )


def delete_recorded(
    *, actor: Actor, queryset: Any, pk: int, action: str, missing: str, field: str
) -> None:
    """Delete one row of the actor's tenant, recording what it was (in the caller's transaction).
    A row of another tenant, or none, is NotFound(`missing`, field=`field`)."""
    row = queryset.filter(tenant_id=actor.tenant_id, pk=pk).first()
    if row is None:
        raise NotFound(missing, field=field)
    audit_record(
        actor=actor, tenant_id=actor.tenant_id, action=action, subject=row, before=snapshot(row)
    )
    row.delete()


def _follow(obj: Any, path: str | None) -> Any:
    if not path:  # the model has no such scope field (not: the subject itself)
        return None
    for name in path.split("__"):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def subject_location(subject: models.Model | None) -> tuple[int | None, int | None]:
    """The department and region a subject lies in, by its model's scope fields: an event is shown
    to readers whose scope covers the subject (the actor's own seat says nothing about the data)."""
    fields = getattr(type(subject), "scope_fields", None) if subject is not None else None
    if fields is None:
        return None, None
    department = _follow(subject, fields.department)
    region = _follow(subject, fields.region)
    return (getattr(department, "pk", None), getattr(region, "pk", None))


@dataclass(frozen=True)
class ExportVerdict:
    allowed: bool
    rows_in_window: int
    limit: int


def export_guard(*, actor: Actor, kind: str, rows: int) -> ExportVerdict:
    """Count an export against the actor's window; past the threshold, freeze the account.

    Runs in its own (durable) transaction so the freeze and the alert stand even though the
    export that crossed the line is refused. Raises Forbidden (code `export_frozen`) then.
    """
    verdict = _export_count(actor=actor, kind=kind, rows=rows)
    if not verdict.allowed:
        raise Forbidden(
            f"导出数量异常：{verdict.rows_in_window} 行超过 {verdict.limit} 行的阈值，账号已冻结，已通知安全管理员",
            code="export_frozen",
        )
    return verdict


@transaction.atomic(durable=True)
def _export_count(*, actor: Actor, kind: str, rows: int) -> ExportVerdict:
    from jingwei.notify.services import notification_send
    from jingwei.org.models import Employee
    from jingwei.org.services import employees_holding

    # Lock the employee row: two exports at once are counted one after the other.
    employee = Employee.objects.select_for_update().get(
        pk=actor.employee_id, tenant_id=actor.tenant_id
    )
    now = timezone.now()
    since = now - dt.timedelta(seconds=settings.EXPORT_GUARD_WINDOW_SECONDS)
    previous = (
        ExportRecord.objects.filter(
            tenant_id=actor.tenant_id, employee_id=employee.pk, at__gte=since
        ).aggregate(total=Sum("rows"))["total"]
        or 0
    )
    total = previous + rows
    limit = settings.EXPORT_GUARD_MAX_ROWS
    record = ExportRecord.objects.create(
        tenant_id=actor.tenant_id,
        employee=employee,
        user_id=actor.user_id,
        kind=kind,
        rows=rows,
        at=now,
    )
    audit_record(
        actor=actor,
        tenant_id=actor.tenant_id,
        action="export.requested",
        subject=record,
        data={"kind": kind, "rows": rows, "rows_in_window": total, "limit": limit},
    )
    if total <= limit:
        return ExportVerdict(True, total, limit)

    before = {"frozen_at": None}
    employee.frozen_at = now
    employee.frozen_reason = (
        f"导出异常：{kind} 在 {settings.EXPORT_GUARD_WINDOW_SECONDS // 60} 分钟内导出 {total} 行"
    )
    employee.save(update_fields=["frozen_at", "frozen_reason", "updated_at"])
    audit_record(
        actor=None,
        tenant_id=actor.tenant_id,
        action="security.account_frozen",
        subject=employee,
        before=before,
        after={"frozen_at": now.isoformat(), "frozen_reason": employee.frozen_reason},
        data={"kind": kind, "rows_in_window": total, "limit": limit},
    )
    notification_send(
        tenant_id=actor.tenant_id,
        recipient_ids=employees_holding(tenant_id=actor.tenant_id, code="security.alert"),
        kind="security.export_frozen",
        severity="urgent",
        title=f"安全告警：{employee.name} 批量导出异常，账号已冻结",
        body=(
            f"{employee.name}（工号 {employee.employee_no}）在 "
            f"{settings.EXPORT_GUARD_WINDOW_SECONDS // 60} 分钟内导出 {total} 行（{kind}），"
            f"超过阈值 {limit} 行。账号已于 {timezone.localtime(now):%Y-%m-%d %H:%M} 冻结。"
        ),
        data={"employee_id": employee.pk, "kind": kind, "rows_in_window": total},
    )
    return ExportVerdict(False, total, limit)
