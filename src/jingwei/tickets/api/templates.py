"""Ticket templates: global templates, regional overrides, versions, revert, the public form
switch and its QR code."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from django.http import HttpResponse
from ninja import Field, Router, Schema, Status
from pydantic import StrictBool

from jingwei.core.api import DB_INT_MAX, AuthedRequest, In
from jingwei.org.api import patch_changes

from .. import services
from ..models import TemplateVersion, TicketTemplate

router = Router(tags=["工单模板"])

Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
PriorityName = Literal["S", "A", "B", "C"]
FORM_HELP = "表单定义：{schema: JSON Schema 2020-12, ui: {字段: {label, widget, order, help}}}，见 docs/tickets-forms.md"


class TemplateVersionOut(Schema):
    id: int
    number: int
    form: dict[str, Any]
    own_fields: dict[str, Any]
    flow_key: str
    default_priority: str
    base_version_id: int | None
    note: str
    created_by_id: int | None
    created_at: datetime


class TemplateOut(Schema):
    id: int
    key: str
    name: str
    category: str
    description: str
    region_id: int | None
    base_id: int | None
    is_active: bool
    public_form: bool = Field(..., description="是否开放公开表单")
    public_url: str | None
    current_version: TemplateVersionOut | None

    @staticmethod
    def resolve_public_form(obj: TicketTemplate) -> bool:
        return bool(obj.public_token)

    @staticmethod
    def resolve_public_url(obj: TicketTemplate) -> str | None:
        from django.conf import settings

        if not obj.public_token:
            return None
        return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/f/{obj.public_token}"


class TemplateIn(In):
    key: str = Field(..., pattern=r"^[a-z][a-z0-9_-]{0,59}$")
    name: str = Field(..., min_length=1, max_length=100)
    category: str = Field("", max_length=30)
    description: str = Field("", max_length=500)
    form: dict[str, Any] = Field(..., description=FORM_HELP)
    flow_key: str = Field(..., min_length=1, max_length=100)
    default_priority: PriorityName = "B"


class OverrideIn(In):
    region_id: Id
    own_fields: dict[str, Any] = Field(
        ..., description="本区域增加的字段：{schema: {properties, required}, ui}"
    )
    name: str = Field("", max_length=100)
    note: str = Field("", max_length=200)


class TemplatePatch(In):
    name: str | None = Field(None, min_length=1, max_length=100)
    category: str | None = Field(None, max_length=30)
    description: str | None = Field(None, max_length=500)
    is_active: StrictBool | None = None
    form: dict[str, Any] | None = Field(None, description=FORM_HELP + "（总部模板）")
    own_fields: dict[str, Any] | None = Field(None, description="本区域增加的字段（区域模板）")
    flow_key: str | None = Field(None, min_length=1, max_length=100)
    default_priority: PriorityName | None = None
    note: str = Field("", max_length=200, description="版本说明")


class RevertIn(In):
    note: str = Field("", max_length=200)


class PublicFormIn(In):
    enabled: StrictBool


@router.get("/tickets/templates", response=list[TemplateOut], summary="工单模板")
def list_templates(request: AuthedRequest) -> QuerySet[TicketTemplate]:
    return services.template_list(actor=request.actor)


@router.post(
    "/tickets/templates",
    response={201: TemplateOut},
    summary="新建总部模板（需全公司范围的模板管理权限）",
)
def create_template(request: AuthedRequest, payload: TemplateIn) -> Status[TicketTemplate]:
    template = services.template_create(actor=request.actor, **payload.model_dump())
    return Status(201, services.template_get(actor=request.actor, template_id=template.pk))


@router.get("/tickets/templates/{template_id}", response=TemplateOut, summary="模板详情")
def get_template(request: AuthedRequest, template_id: int) -> TicketTemplate:
    return services.template_get(actor=request.actor, template_id=template_id)


@router.patch(
    "/tickets/templates/{template_id}",
    response=TemplateOut,
    summary="修改模板（改表单、流程或默认优先级会生成新版本；已有工单保持原版本）",
)
def update_template(
    request: AuthedRequest, template_id: int, payload: TemplatePatch
) -> TicketTemplate:
    changes = patch_changes(payload, not_null=("name", "is_active"))
    note = changes.pop("note", "")
    services.template_update(
        actor=request.actor, template_id=template_id, changes=changes, note=note
    )
    return services.template_get(actor=request.actor, template_id=template_id)


@router.post(
    "/tickets/templates/{template_id}/overrides",
    response={201: TemplateOut},
    summary="为区域建立区域模板（在总部表单上增加本区域字段）",
)
def create_override(
    request: AuthedRequest, template_id: int, payload: OverrideIn
) -> Status[TicketTemplate]:
    override = services.override_create(
        actor=request.actor, template_id=template_id, **payload.model_dump()
    )
    return Status(201, services.template_get(actor=request.actor, template_id=override.pk))


@router.post(
    "/tickets/templates/{template_id}/revert",
    response=TemplateOut,
    summary="撤销上一次修改：以上一版本的内容生成新版本（如活动结束后去掉临时字段）",
)
def revert_template(request: AuthedRequest, template_id: int, payload: RevertIn) -> TicketTemplate:
    services.template_revert(actor=request.actor, template_id=template_id, note=payload.note)
    return services.template_get(actor=request.actor, template_id=template_id)


@router.get(
    "/tickets/templates/{template_id}/versions",
    response=list[TemplateVersionOut],
    summary="模板的全部版本",
)
def list_versions(request: AuthedRequest, template_id: int) -> QuerySet[TemplateVersion]:
    template = services.template_get(actor=request.actor, template_id=template_id)
    return template.versions.order_by("-number")


@router.post(
    "/tickets/templates/{template_id}/public-form",
    response=TemplateOut,
    summary="开放（生成新链接）或关闭公开表单",
)
def set_public_form(
    request: AuthedRequest, template_id: int, payload: PublicFormIn
) -> TicketTemplate:
    services.template_publish_form(
        actor=request.actor, template_id=template_id, enabled=payload.enabled
    )
    return services.template_get(actor=request.actor, template_id=template_id)


@router.get(
    "/tickets/templates/{template_id}/qr.{fmt}",
    response={200: None},
    summary="公开表单的二维码（png 或 svg）",
)
def public_form_qr(
    request: AuthedRequest, template_id: int, fmt: Literal["png", "svg"]
) -> HttpResponse:
    from jingwei.core.errors import Conflict

    template = services.template_get(actor=request.actor, template_id=template_id)
    url = TemplateOut.resolve_public_url(template)
    if url is None:
        raise Conflict("公开表单未开放", code="public_form_closed")
    if fmt == "png":
        return HttpResponse(services.qr_png(url), content_type="image/png")
    return HttpResponse(services.qr_svg(url), content_type="image/svg+xml")
