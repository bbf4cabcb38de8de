"""Segment API (人群) and customer exports: saved filters with their live member count for the
reader, members, the count of unsaved conditions, and CSV exports of the customer list and of a
segment. Thin: parse, call a service, serialise.

Exports are POST, like the employee export: an export counts against the export guard and can
freeze the account, so a link or an image on another site must not be able to trigger one (a
session POST passes the CSRF check; a GET would not be checked)."""

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from jingwei.core.api import AuthedRequest, Filters, In, Page
from jingwei.org.api import patch_changes

from .. import selectors
from ..models import Customer, Segment
from ..services import exporting, segments
from .profiles import CustomerFilters, CustomerOut

router = Router(tags=["客户分群"])

CONDITIONS_HELP = (
    "条件（与自动标签规则、评分相同的条件语言）：{all|any: [..]} / {not: ..} / "
    "{field, op, value} / {tag, has} / {event, channel, within_days, measure, op, value}，"
    '例如 {"all": [{"field": "region", "op": "in", "value": [3]}, '
    '{"event": "order", "within_days": 90, "op": "gte", "value": 3}]}'
)


# --- schemas -------------------------------------------------------------------------------


class SegmentOut(Schema):
    id: int
    name: str
    description: str
    conditions: dict[str, Any]
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime


class SegmentDetailOut(SegmentOut):
    member_count: int | None = Field(
        ..., description="当前满足条件、且您能看到的客户数（实时计算）；条件失效时为 null"
    )
    conditions_text: str = Field(..., description="条件的文字说明")
    problem: str = Field(..., description="条件失效（如引用的标签已删除）时的说明，否则为空")
    counted_at: datetime


class SegmentIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    description: str = Field("", max_length=200)
    conditions: dict[str, Any] = Field(..., description=CONDITIONS_HELP)


class SegmentPatch(In):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=200)
    conditions: dict[str, Any] | None = Field(None, description=CONDITIONS_HELP)


class PreviewIn(In):
    conditions: dict[str, Any] = Field(..., description=CONDITIONS_HELP)


class PreviewOut(Schema):
    member_count: int = Field(..., description="当前满足条件、且您能看到的客户数")
    conditions_text: str


class SegmentFilters(Filters):
    q: str | None = Field(None, max_length=50, description="名称包含")


def _detail(result: segments.SegmentCount) -> dict[str, Any]:
    segment = result.segment
    return {
        **{f: getattr(segment, f) for f in SegmentOut.model_fields},
        "member_count": result.member_count,
        "conditions_text": result.conditions_text,
        "problem": result.problem,
        "counted_at": result.counted_at,
    }


def _csv(body: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- exports -------------------------------------------------------------------------------
# Literal paths before "/customers/{customer_id}" (in profiles), which would take them for an id.


@router.post(
    "/customers/export",
    summary="导出客户（CSV，与客户列表相同的筛选；受导出防护；无 customer.view_pii 时手机号、邮箱打码）",
)
def export_customers(request: AuthedRequest, filters: Query[CustomerFilters]) -> HttpResponse:
    body = exporting.customers_export_csv(
        actor=request.actor, filters=selectors.CustomerFilters(**filters.model_dump())
    )
    return _csv(body, "customers.csv")


# --- segments ------------------------------------------------------------------------------


@router.get("/customers/segments", response=list[SegmentOut], summary="客户分群")
@paginate(Page)
def list_segments(request: AuthedRequest, filters: Query[SegmentFilters]) -> QuerySet[Segment]:
    found = segments.segment_list(actor=request.actor)
    return found.filter(name__icontains=filters.q) if filters.q else found


@router.post(
    "/customers/segments",
    response={201: SegmentDetailOut},
    summary="新建分群（需全公司范围的 customer.manage）",
)
def create_segment(request: AuthedRequest, payload: SegmentIn) -> Status[dict[str, Any]]:
    segment = segments.segment_create(
        actor=request.actor,
        name=payload.name,
        description=payload.description,
        conditions_data=payload.conditions,
    )
    return Status(201, _detail(segments.segment_read(actor=request.actor, segment_id=segment.pk)))


@router.post(
    "/customers/segments/preview",
    response=PreviewOut,
    summary="试算：这些条件现在圈中多少位（您能看到的）客户，不保存",
)
def preview_segment(request: AuthedRequest, payload: PreviewIn) -> dict[str, Any]:
    count, text = segments.segment_preview(actor=request.actor, conditions_data=payload.conditions)
    return {"member_count": count, "conditions_text": text}


@router.get(
    "/customers/segments/{segment_id}",
    response=SegmentDetailOut,
    summary="分群详情，含实时人数（只数您能看到的客户）",
)
def get_segment(request: AuthedRequest, segment_id: int) -> dict[str, Any]:
    return _detail(segments.segment_read(actor=request.actor, segment_id=segment_id))


@router.patch("/customers/segments/{segment_id}", response=SegmentDetailOut, summary="修改分群")
def update_segment(request: AuthedRequest, segment_id: int, payload: SegmentPatch) -> Any:
    changes = patch_changes(payload, not_null=("name", "description", "conditions"))
    segments.segment_update(actor=request.actor, segment_id=segment_id, changes=changes)
    return _detail(segments.segment_read(actor=request.actor, segment_id=segment_id))


@router.delete("/customers/segments/{segment_id}", response={204: None}, summary="删除分群")
def delete_segment(request: AuthedRequest, segment_id: int) -> Status[None]:
    segments.segment_delete(actor=request.actor, segment_id=segment_id)
    return Status(204, None)


@router.get(
    "/customers/segments/{segment_id}/members",
    response=list[CustomerOut],
    summary="分群成员（您能看到的、当前满足条件的客户，最新登记的在前）",
)
@paginate(Page)
def list_segment_members(request: AuthedRequest, segment_id: int) -> QuerySet[Customer]:
    return segments.segment_members(actor=request.actor, segment_id=segment_id)


@router.post(
    "/customers/segments/{segment_id}/export",
    summary="导出分群成员（CSV；受导出防护；无 customer.view_pii 时手机号、邮箱打码）",
)
def export_segment(request: AuthedRequest, segment_id: int) -> HttpResponse:
    body = exporting.segment_export_csv(actor=request.actor, segment_id=segment_id)
    return _csv(body, f"segment-{segment_id}.csv")
