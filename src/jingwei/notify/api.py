from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from ninja import Router, Schema
from ninja.pagination import paginate

from jingwei.core.api import AuthedRequest, Page

from . import services
from .models import Notification

router = Router(tags=["站内通知"])


class NotificationOut(Schema):
    id: int
    kind: str
    severity: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class UnreadOut(Schema):
    unread: int


class MarkedOut(Schema):
    marked: int


def _inbox(request: AuthedRequest) -> QuerySet[Notification]:
    return services.inbox(tenant_id=request.actor.tenant_id, employee_id=request.actor.employee_id)


@router.get("/inbox", response=list[NotificationOut], summary="我的通知")
@paginate(Page)
def list_inbox(request: AuthedRequest, unread: bool = False) -> QuerySet[Notification]:
    qs = _inbox(request)
    return qs.filter(read_at__isnull=True) if unread else qs


@router.get("/inbox/unread", response=UnreadOut, summary="未读数")
def unread_count(request: AuthedRequest) -> UnreadOut:
    return UnreadOut(unread=_inbox(request).filter(read_at__isnull=True).count())


@router.post("/inbox/{notification_id}/read", response=NotificationOut, summary="标为已读")
def mark_read(request: AuthedRequest, notification_id: int) -> Notification:
    return services.notification_mark_read(
        tenant_id=request.actor.tenant_id,
        employee_id=request.actor.employee_id,
        notification_id=notification_id,
    )


@router.post("/inbox/read-all", response=MarkedOut, summary="全部标为已读")
def mark_all_read(request: AuthedRequest) -> MarkedOut:
    return MarkedOut(
        marked=services.inbox_mark_all_read(
            tenant_id=request.actor.tenant_id, employee_id=request.actor.employee_id
        )
    )
