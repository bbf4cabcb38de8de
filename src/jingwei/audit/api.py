from datetime import datetime

from django.db.models import QuerySet
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from jingwei.core.api import DB_INT_MAX, AuthedRequest, Filters, Moment, Page
from jingwei.core.errors import NotFound
from jingwei.core.pii import MaskedSnapshot

from .models import AuditEvent

router = Router(tags=["审计"])
READ = "audit.view"


class AuditEventOut(Schema):
    id: int
    at: datetime
    actor_id: int | None
    actor_name: str
    action: str
    subject_type: str
    subject_id: str
    subject_label: str
    before: MaskedSnapshot
    after: MaskedSnapshot
    data: MaskedSnapshot
    ip: str | None


class AuditFilters(Filters):
    action: str | None = Field(None, max_length=100, description="动作，前缀匹配，如 org.employee")
    subject_type: str | None = Field(None, max_length=100)
    subject_id: str | None = Field(None, max_length=64)
    actor_id: int | None = Field(None, ge=1, le=DB_INT_MAX)
    since: Moment | None = None
    until: Moment | None = None


def _events(request: AuthedRequest) -> QuerySet[AuditEvent]:
    request.actor.require(READ)
    return AuditEvent.objects.visible_to(request.actor, READ)


@router.get("/events", response=list[AuditEventOut], summary="审计日志（按数据范围）")
@paginate(Page)
def list_events(request: AuthedRequest, filters: Query[AuditFilters]) -> QuerySet[AuditEvent]:
    qs = _events(request)
    if filters.action:
        qs = qs.filter(action__startswith=filters.action)
    if filters.subject_type:
        qs = qs.filter(subject_type=filters.subject_type)
    if filters.subject_id:
        qs = qs.filter(subject_id=filters.subject_id)
    if filters.actor_id is not None:
        qs = qs.filter(actor_id=filters.actor_id)
    if filters.since:
        qs = qs.filter(at__gte=filters.since)
    if filters.until:
        qs = qs.filter(at__lt=filters.until)
    return qs


@router.get("/events/{event_id}", response=AuditEventOut, summary="审计事件详情")
def get_event(request: AuthedRequest, event_id: int) -> AuditEvent:
    event = _events(request).filter(pk=event_id).first()
    if event is None:
        raise NotFound("审计事件不存在", field="id")
    return event
