"""Tickets: create (idempotent with an Idempotency-Key header), list and filter, detail with the
timeline, edit, assign, close, comments, watchers, attachments, bulk assign / close / export,
and creating an opportunity from a ticket."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from django.http import FileResponse, HttpResponse
from ninja import Field, File, Query, Router, Schema, Status, UploadedFile
from ninja.pagination import paginate
from pydantic import StrictBool

from jingwei.core.api import DB_INT_MAX, AuthedRequest, Filters, In, Moment, Page
from jingwei.core.pii import MaskedPhone
from jingwei.org.api import patch_changes

from .. import selectors, services
from ..models import Attachment, Ticket, TicketComment
from ..services.common import VIEW, ticket_get
from .opportunities import Day

router = Router(tags=["工单"])

Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
OptionalId = Field(None, ge=1, le=DB_INT_MAX)
PriorityName = Literal["S", "A", "B", "C"]
StatusName = Literal["open", "resolved", "closed"]
SourceName = Literal["console", "api", "public_form", "email", "wecom", "shop", "phone"]


class TicketOut(Schema):
    id: int
    number: str
    title: str
    template_id: int
    template_key: str
    template_version: int
    source: str
    priority: str
    status: str
    stage: str = Field(..., description="流程当前步骤")
    customer_id: int | None
    contact_name: str
    contact_phone: MaskedPhone
    contact_email: str
    region_id: int | None
    queue_id: int | None
    owner_id: int | None
    opportunity_id: int | None
    project_ref: str
    shop_order_ref: str
    instance_id: int | None
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    @staticmethod
    def resolve_template_key(obj: Ticket) -> str:
        return obj.template.key

    @staticmethod
    def resolve_template_version(obj: Ticket) -> int:
        return obj.template_version.number


class TicketDetailOut(TicketOut):
    answers: dict[str, Any]
    form: dict[str, Any] = Field(..., description="该工单所用模板版本的表单定义")
    progress_url: str
    watcher_ids: list[int]
    attachments: list[dict[str, Any]]
    routing: dict[str, Any] | None

    @staticmethod
    def resolve_form(obj: Ticket) -> dict[str, Any]:
        form: dict[str, Any] = obj.template_version.form
        return form

    @staticmethod
    def resolve_progress_url(obj: Ticket) -> str:
        return services.progress_url(obj)

    @staticmethod
    def resolve_watcher_ids(obj: Ticket) -> list[int]:
        return sorted(w.employee_id for w in obj.watchers.all())  # prefetched

    @staticmethod
    def resolve_attachments(obj: Ticket) -> list[dict[str, Any]]:
        return [
            {"key": a.key, "name": a.name, "size": a.size, "content_type": a.content_type}
            for a in sorted(obj.attachments.all(), key=lambda a: a.pk)  # prefetched
        ]

    @staticmethod
    def resolve_routing(obj: Ticket) -> dict[str, Any] | None:
        row = obj.events.filter(kind="routed").first()
        return row.data if row is not None else None


class TicketIn(In):
    template: str = Field(
        ..., min_length=1, max_length=60, description="模板标识（按工单区域自动选用区域模板）"
    )
    answers: dict[str, Any] = Field(default_factory=dict, description="表单答案，按字段编号")
    source: Literal["console", "api", "phone", "shop"] | None = Field(
        None, description="来源；不填时控制台会话为 console，API 令牌为 api"
    )
    source_key: str = Field(
        "", max_length=200, description="外部编号（如商城订单事件号）：同一来源同一编号只建一张工单"
    )
    title: str = Field("", max_length=200)
    customer_id: int | None = OptionalId
    region_id: int | None = OptionalId
    priority: PriorityName | None = None
    contact_name: str = Field("", max_length=100)
    contact_phone: str = Field("", max_length=30)
    contact_email: str = Field("", max_length=254)
    opportunity_id: int | None = OptionalId
    project_ref: str = Field("", max_length=60)
    shop_order_ref: str = Field("", max_length=60)
    watcher_ids: list[Id] = Field(default_factory=list, max_length=50)
    attachment_keys: list[str] = Field(default_factory=list, max_length=50)


class TicketPatch(In):
    title: str | None = Field(None, min_length=1, max_length=200)
    priority: PriorityName | None = None
    customer_id: int | None = OptionalId
    opportunity_id: int | None = OptionalId
    project_ref: str | None = Field(None, max_length=60)
    shop_order_ref: str | None = Field(None, max_length=60)


class TicketAssignIn(In):
    owner_id: Id
    reason: str = Field("", max_length=200)


class CloseIn(In):
    reason: str = Field(..., min_length=1, max_length=200)


class CommentIn(In):
    body: str = Field(..., min_length=1, max_length=20000)
    visibility: Literal["internal", "public"] = "internal"


class CommentOut(Schema):
    id: int
    author_id: int | None
    author_name: str
    body: str
    visibility: str
    via: str
    created_at: datetime


class WatchIn(In):
    employee_id: Id
    watching: StrictBool = True


class TimelineItem(Schema):
    at: datetime
    kind: str
    actor: str | None
    node_id: str
    data: dict[str, Any]


class BulkAssignIn(In):
    ticket_ids: list[Id] = Field(..., min_length=1, max_length=500)
    owner_id: Id
    reason: str = Field("", max_length=200)


class BulkCloseIn(In):
    ticket_ids: list[Id] = Field(..., min_length=1, max_length=500)
    reason: str = Field(..., min_length=1, max_length=200)


class BulkOut(Schema):
    count: int
    numbers: list[str]


class ExportIn(In):
    ticket_ids: list[Id] | None = Field(
        None, max_length=5000, description="选中的工单；不填时按筛选条件导出"
    )


class OpportunityFromTicketIn(In):
    title: str = Field("", max_length=200)
    amount: str | None = Field(
        None, pattern=r"^\d{1,12}(\.\d{1,2})?$", description='金额（十进制字符串，如 "12000.50"）'
    )
    stage: Literal["lead", "qualified", "proposal", "negotiation", "won", "lost"] = "lead"
    expected_close: Day | None = None


class AttachmentOut(Schema):
    key: str
    name: str
    size: int
    content_type: str
    ticket_id: int | None
    created_at: datetime


class TicketFilters(Filters):
    q: str | None = Field(None, max_length=50, description="工单号或标题包含")
    status: StatusName | None = None
    priority: PriorityName | None = None
    source: SourceName | None = None
    template: str | None = Field(None, max_length=60)
    queue_id: int | None = OptionalId
    owner_id: int | None = OptionalId
    region_id: int | None = Field(None, ge=1, le=DB_INT_MAX, description="该区域及下级区域")
    customer_id: int | None = OptionalId
    opportunity_id: int | None = OptionalId
    mine: bool = Field(False, description="只看我负责的")
    created_after: Moment | None = None
    created_before: Moment | None = None


def _detail(actor: Any, ticket_id: int) -> Ticket:
    ticket = ticket_get(actor, ticket_id)
    return (
        Ticket.objects.select_related("template", "template_version")
        .prefetch_related("watchers", "attachments")
        .get(pk=ticket.pk)
    )


# --- literal paths first ---------------------------------------------------------------------


@router.post(
    "/tickets/bulk/assign",
    response=BulkOut,
    summary="批量派单（全部成功或全部不做；每张工单的待办步骤转给新负责人）",
)
def bulk_assign(request: AuthedRequest, payload: BulkAssignIn) -> dict[str, Any]:
    done = services.tickets_bulk_assign(actor=request.actor, **payload.model_dump())
    return {"count": len(done), "numbers": [t.number for t in done]}


@router.post("/tickets/bulk/close", response=BulkOut, summary="批量关闭（须填写原因）")
def bulk_close(request: AuthedRequest, payload: BulkCloseIn) -> dict[str, Any]:
    done = services.tickets_bulk_close(actor=request.actor, **payload.model_dump())
    return {"count": len(done), "numbers": [t.number for t in done]}


@router.post(
    "/tickets/export",
    response={200: None},
    summary="导出工单（CSV；选中的或按筛选条件；受导出防护；无 customer.view_pii 时电话打码）",
)
def export_tickets(
    request: AuthedRequest, filters: Query[TicketFilters], payload: ExportIn
) -> HttpResponse:
    qs = selectors.ticket_list(
        request.actor, selectors.TicketFilters(**filters.model_dump()), perm=VIEW
    )
    if payload.ticket_ids:
        qs = qs.filter(pk__in=payload.ticket_ids)
    body = services.tickets_export_csv(actor=request.actor, tickets=qs)
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="tickets.csv"'
    return response


@router.post(
    "/tickets/attachments",
    response={201: AttachmentOut},
    summary="上传文件（照片、签名、附件）；表单答案里填返回的 key",
)
def upload_attachment(
    request: AuthedRequest, file: File[UploadedFile], ticket_id: int | None = None
) -> Status[Attachment]:
    return Status(
        201, services.attachment_upload(actor=request.actor, upload=file, ticket_id=ticket_id)
    )


@router.get("/tickets/attachments/{key}", response={200: None}, summary="下载文件")
def download_attachment(request: AuthedRequest, key: str) -> FileResponse:
    row = services.attachment_get(actor=request.actor, key=key)
    return FileResponse(row.file.open("rb"), as_attachment=True, filename=row.name)


# --- tickets ---------------------------------------------------------------------------------


@router.get("/tickets", response=list[TicketOut], summary="工单列表（按数据范围）")
@paginate(Page)
def list_tickets(request: AuthedRequest, filters: Query[TicketFilters]) -> QuerySet[Ticket]:
    return selectors.ticket_list(
        request.actor, selectors.TicketFilters(**filters.model_dump())
    ).select_related("template_version")


@router.post(
    "/tickets",
    response={201: TicketDetailOut, 200: TicketDetailOut},
    summary="新建工单（校验与控制台相同；路由、编号、启动流程与 SLA）",
)
def create_ticket(request: AuthedRequest, payload: TicketIn) -> Status[Ticket]:
    data = payload.model_dump()
    source = data.pop("source") or ("api" if request.actor.via_token else "console")
    created = services.ticket_create(
        actor=request.actor,
        new=services.NewTicket(source=source, template_key=data.pop("template"), **data),
    )
    return Status(201 if created.created else 200, _detail_unchecked(created.ticket.pk))


def _detail_unchecked(ticket_id: int) -> Ticket:
    # The creator sees what they made even when it is routed out of their scope.
    return (
        Ticket.objects.select_related("template", "template_version")
        .prefetch_related("watchers", "attachments")
        .get(pk=ticket_id)
    )


@router.get("/tickets/{ticket_id}", response=TicketDetailOut, summary="工单详情")
def get_ticket(request: AuthedRequest, ticket_id: int) -> Ticket:
    return _detail(request.actor, ticket_id)


@router.patch("/tickets/{ticket_id}", response=TicketDetailOut, summary="修改标题、优先级与关联")
def update_ticket(request: AuthedRequest, ticket_id: int, payload: TicketPatch) -> Ticket:
    services.ticket_update(
        actor=request.actor,
        ticket_id=ticket_id,
        changes=patch_changes(payload, not_null=("title", "priority")),
    )
    return _detail(request.actor, ticket_id)


@router.get(
    "/tickets/{ticket_id}/timeline",
    response=list[TimelineItem],
    summary="工单时间线（工单事件、流程事件与评论）",
)
def ticket_timeline(request: AuthedRequest, ticket_id: int) -> list[dict[str, Any]]:
    return selectors.ticket_timeline(ticket_get(request.actor, ticket_id))


@router.post("/tickets/{ticket_id}/assign", response=TicketDetailOut, summary="派单 / 改派")
def assign_ticket(request: AuthedRequest, ticket_id: int, payload: TicketAssignIn) -> Ticket:
    services.ticket_assign(actor=request.actor, ticket_id=ticket_id, **payload.model_dump())
    return _detail_unchecked(ticket_id)


@router.post(
    "/tickets/{ticket_id}/close", response=TicketDetailOut, summary="关闭工单（流程随之停止）"
)
def close_ticket(request: AuthedRequest, ticket_id: int, payload: CloseIn) -> Ticket:
    services.ticket_close(actor=request.actor, ticket_id=ticket_id, reason=payload.reason)
    return _detail(request.actor, ticket_id)


@router.get("/tickets/{ticket_id}/comments", response=list[CommentOut], summary="评论")
def list_comments(request: AuthedRequest, ticket_id: int) -> QuerySet[TicketComment]:
    return ticket_get(request.actor, ticket_id).comments.order_by("created_at", "id")


@router.post(
    "/tickets/{ticket_id}/comments",
    response={201: CommentOut},
    summary="添加评论（internal 内部 / public 客户可见）",
)
def add_comment(
    request: AuthedRequest, ticket_id: int, payload: CommentIn
) -> Status[TicketComment]:
    return Status(
        201, services.comment_add(actor=request.actor, ticket_id=ticket_id, **payload.model_dump())
    )


@router.post("/tickets/{ticket_id}/watchers", response=TicketDetailOut, summary="关注 / 取消关注")
def set_watcher(request: AuthedRequest, ticket_id: int, payload: WatchIn) -> Ticket:
    services.watcher_set(actor=request.actor, ticket_id=ticket_id, **payload.model_dump())
    return _detail(request.actor, ticket_id)


@router.post(
    "/tickets/{ticket_id}/opportunity",
    response={201: dict[str, Any]},
    summary="由工单创建商机（双向关联）",
)
def create_opportunity_from_ticket(
    request: AuthedRequest, ticket_id: int, payload: OpportunityFromTicketIn
) -> Status[dict[str, Any]]:
    opportunity = services.ticket_opportunity_create(
        actor=request.actor, ticket_id=ticket_id, **payload.model_dump()
    )
    return Status(201, {"id": opportunity.pk, "title": opportunity.title, "ticket_id": ticket_id})


@router.get(
    "/tickets/{ticket_id}/progress-qr.{fmt}",
    response={200: None},
    summary="进度页二维码（png / svg）",
)
def progress_qr(request: AuthedRequest, ticket_id: int, fmt: Literal["png", "svg"]) -> HttpResponse:
    url = services.progress_url(ticket_get(request.actor, ticket_id))
    if fmt == "png":
        return HttpResponse(services.qr_png(url), content_type="image/png")
    return HttpResponse(services.qr_svg(url), content_type="image/svg+xml")
