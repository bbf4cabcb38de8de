"""Behaviour event API: ingest one event or a batch, read a customer's timeline, and the customer
settings (event retention). Thin: parse, call an event service, serialise. Event data is shown
with phone and ID numbers masked for readers without customer.view_pii."""

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django.db.models import QuerySet
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import ValidationError

from jingwei.core.api import _MESSAGES, DB_INT_MAX, AuthedRequest, Filters, In, Moment, Page
from jingwei.core.pii import MaskedSnapshot

from .. import services
from ..models import CustomerEvent, CustomerSettings
from ..services.events import (
    BATCH_MAX,
    DATA_MAX_BYTES,
    RETENTION_MAX_DAYS,
    RETENTION_MIN_DAYS,
    EventInput,
)
from .profiles import IdentityIn

router = Router(tags=["客户行为事件"])

IngestKind = Literal[
    "page_view",
    "chat",
    "form",
    "order",
    "ticket",
    "campaign",
    "call",
    "mail",
    "survey",
    "follow_up",
]
AnyKind = Literal[IngestKind, "system"]
KINDS_HELP = (
    "page_view 浏览 / chat 会话 / form 表单 / order 订单 / ticket 工单 / campaign 营销活动 / "
    "call 通话 / mail 邮件 / survey 回访调查 / follow_up 跟进（system 为系统记录，不能从外部写入）"
)


class EventIn(In):
    event_id: str = Field(
        ...,
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="发送方的事件编号（可见 ASCII 字符，不含空格），同一企业内唯一；"
        "重发同一事件用同一编号，不会重复计数",
    )
    kind: IngestKind = Field(..., description=KINDS_HELP)
    channel: str = Field("", max_length=50, description="渠道，如 miniprogram、taobao、wecom")
    occurred_at: Moment = Field(..., description="发生时间（带时区）")
    title: str = Field("", max_length=200, description="摘要，显示在时间线上")
    amount: str | None = Field(
        None, pattern=r"^-?\d{1,12}(\.\d{1,2})?$", description='金额（十进制字符串，如 "199.00"）'
    )
    data: dict[str, Any] = Field(
        default_factory=dict, description=f"详情（JSON 对象，不超过 {DATA_MAX_BYTES // 1024} KB）"
    )
    customer_id: int | None = Field(
        None, ge=1, le=DB_INT_MAX, description="客户编号；与 identities 二选一"
    )
    identities: list[IdentityIn] | None = Field(
        None,
        max_length=20,
        description="客户的身份（同登记客户）；找不到对应客户时新建客户",
    )
    customer_name: str | None = Field(
        None, max_length=100, description="按 identities 新建客户时的名称（不填为「未命名客户」）"
    )

    def to_input(self) -> EventInput:
        return EventInput(
            event_id=self.event_id,
            kind=self.kind,
            occurred_at=self.occurred_at,
            channel=self.channel,
            title=self.title,
            amount=Decimal(self.amount) if self.amount is not None else None,
            data=self.data,
            customer_id=self.customer_id,
            identities=[i.to_input() for i in self.identities or ()],
            customer_name=self.customer_name or "",
        )


class EventOut(Schema):
    id: int
    event_id: str
    customer_id: int
    kind: str
    kind_label: str = Field(..., alias="get_kind_display")
    channel: str
    title: str
    amount: Decimal | None
    data: MaskedSnapshot = Field(
        ..., description="详情；没有 customer.view_pii 时手机号、证件号打码"
    )
    occurred_at: datetime
    received_at: datetime


class BatchIn(In):
    items: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        max_length=BATCH_MAX,
        description="每一项与单条上报（POST /customers/events）的请求体相同；逐项校验与保存，"
        "某一项有误不影响其他项",
    )


class BatchItemOut(Schema):
    index: int = Field(..., description="在 items 中的位置（从 0 开始）")
    event_id: str | None
    status: Literal["created", "duplicate", "error"] = Field(
        ..., description="created 新保存 / duplicate 已保存过的同一事件（未重复计数）/ error 未保存"
    )
    id: int | None = None
    customer_id: int | None = None
    code: str | None = None
    message: str | None = None
    field: str | None = Field(None, description="出错的字段，如 items.3.occurred_at")


class BatchOut(Schema):
    created: int
    duplicates: int
    errors: int
    results: list[BatchItemOut]


class TimelineFilters(Filters):
    kind: AnyKind | None = None
    channel: str | None = Field(None, max_length=50)
    since: Moment | None = Field(None, description="发生时间不早于")
    until: Moment | None = Field(None, description="发生时间早于")


class SettingsOut(Schema):
    event_retention_days: int = Field(..., description="行为事件保留天数（0 为永久保留）")


class SettingsIn(In):
    event_retention_days: int = Field(
        ...,
        ge=0,
        le=RETENTION_MAX_DAYS,
        description=f"0 为永久保留，否则至少 {RETENTION_MIN_DAYS} 天；更早的事件每日清理",
    )


# Literal paths before "/customers/{customer_id}", which would otherwise take them for an id.


@router.post(
    "/customers/events",
    response={200: EventOut, 201: EventOut},
    summary="上报一条客户行为事件（201 新保存；200 同一 event_id 的同一事件已保存过）",
)
def ingest_event(request: AuthedRequest, payload: EventIn) -> Status[CustomerEvent]:
    event, created = services.event_ingest(actor=request.actor, event=payload.to_input())
    return Status(201 if created else 200, event)


@router.post(
    "/customers/events/batch",
    response=BatchOut,
    summary=f"批量上报行为事件（最多 {BATCH_MAX} 条，逐项返回结果）",
)
def ingest_events(request: AuthedRequest, payload: BatchIn) -> dict[str, Any]:
    results: list[dict[str, Any] | None] = [None] * len(payload.items)
    parsed: list[tuple[int, EventInput]] = []
    for index, item in enumerate(payload.items):
        event_id = item.get("event_id") if isinstance(item.get("event_id"), str) else None
        try:
            parsed.append((index, EventIn.model_validate(item).to_input()))
        except ValidationError as exc:
            error = exc.errors()[0]
            path = ".".join(str(p) for p in error["loc"])
            results[index] = _error(index, event_id, "validation_error", path, error["type"])
    outcomes = services.events_ingest_batch(actor=request.actor, events=[e for _, e in parsed])
    for (index, event), outcome in zip(parsed, outcomes, strict=True):
        if outcome.error is not None:
            field = outcome.error.field
            results[index] = {
                "index": index,
                "event_id": event.event_id,
                "status": "error",
                "code": outcome.error.code,
                "message": outcome.error.message,
                "field": f"items.{index}.{field}" if field else f"items.{index}",
            }
        else:
            assert outcome.event is not None
            results[index] = {
                "index": index,
                "event_id": event.event_id,
                "status": outcome.status,
                "id": outcome.event.pk,
                "customer_id": outcome.event.customer_id,
            }
    done = [r for r in results if r is not None]
    return {
        "created": sum(1 for r in done if r["status"] == "created"),
        "duplicates": sum(1 for r in done if r["status"] == "duplicate"),
        "errors": sum(1 for r in done if r["status"] == "error"),
        "results": done,
    }


def _error(index: int, event_id: str | None, code: str, path: str, kind: str) -> dict[str, Any]:
    field = f"items.{index}.{path}" if path else f"items.{index}"
    return {
        "index": index,
        "event_id": event_id,
        "status": "error",
        "code": code,
        "message": f"{field}：{_MESSAGES.get(kind, '取值无效')}",
        "field": field,
    }


@router.get("/customers/settings", response=SettingsOut, summary="客户设置（行为事件保留天数）")
def get_settings(request: AuthedRequest) -> CustomerSettings:
    return services.customer_settings_get(actor=request.actor)


@router.put("/customers/settings", response=SettingsOut, summary="修改客户设置")
def put_settings(request: AuthedRequest, payload: SettingsIn) -> CustomerSettings:
    return services.customer_settings_update(
        actor=request.actor, event_retention_days=payload.event_retention_days
    )


@router.get(
    "/customers/{customer_id}/timeline",
    response=list[EventOut],
    summary="客户时间线（最新在前；含合并进来的客户的事件）",
)
@paginate(Page)
def timeline(
    request: AuthedRequest, customer_id: int, filters: Query[TimelineFilters]
) -> QuerySet[CustomerEvent]:
    return services.timeline_list(
        actor=request.actor, customer_id=customer_id, **filters.model_dump()
    )
