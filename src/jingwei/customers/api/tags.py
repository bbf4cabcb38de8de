"""Tag API: the tag catalogue (groups and tags), tags on customers (one at a time and in bulk), and
auto-tag rules with their dry run and batch run. Thin: parse, call a tagging service, serialise."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from ninja import Field, Router, Schema, Status

from jingwei.core.api import DB_INT_MAX, AuthedRequest, In
from jingwei.org.api import patch_changes

from .. import services
from ..models import Customer, CustomerTag, TagGroup, TagRule
from ..services.tagging import BULK_MAX
from .profiles import CustomerBriefOut

router = Router(tags=["客户标签"])

Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
Sort = Field(0, ge=-(2**31), le=2**31 - 1)
Color = Field("", max_length=20, pattern=r"^(#[0-9A-Fa-f]{6})?$", description="如 #E6A23C；可不填")
ChoiceName = Literal["single", "multi"]
CONDITIONS_HELP = (
    "条件（与分群、评分相同的条件语言）：{all|any: [..]} / {not: ..} / "
    "{field, op, value} / {tag, has} / {event, channel, within_days, measure, op, value}，见文档"
)


# --- schemas -------------------------------------------------------------------------------


class TagOut(Schema):
    id: int
    group_id: int
    name: str
    color: str
    sort: int


class TagGroupOut(Schema):
    id: int
    name: str
    choice: str = Field(..., description="single 单选（每位客户最多一个）/ multi 多选")
    description: str
    sort: int
    tags: list[TagOut]


class TagGroupIn(In):
    name: str = Field(..., min_length=1, max_length=50)
    choice: ChoiceName = "multi"
    description: str = Field("", max_length=200)
    sort: int = Sort


class TagGroupPatch(In):
    name: str | None = Field(None, min_length=1, max_length=50)
    choice: ChoiceName | None = Field(
        None, description="改为单选时，若有客户在该组有多个标签则拒绝"
    )
    description: str | None = Field(None, max_length=200)
    sort: int | None = Field(None, ge=-(2**31), le=2**31 - 1)


class TagIn(In):
    name: str = Field(..., min_length=1, max_length=50)
    color: str = Color
    sort: int = Sort


class TagPatch(In):
    name: str | None = Field(None, min_length=1, max_length=50)
    color: str | None = Field(None, max_length=20, pattern=r"^(#[0-9A-Fa-f]{6})?$")
    sort: int | None = Field(None, ge=-(2**31), le=2**31 - 1)


class CustomerTagOut(Schema):
    id: int
    tag_id: int
    tag_name: str = Field(..., alias="tag.name")
    color: str = Field(..., alias="tag.color")
    group_id: int = Field(..., alias="tag.group_id")
    group_name: str = Field(..., alias="tag.group.name")
    source: str = Field(
        ..., description="manual 手动 / rule 规则 / import 导入 / integration 集成同步"
    )
    source_label: str = Field(..., alias="get_source_display")
    rule_id: int | None = Field(..., description="打这个标签的自动标签规则（规则删除后为空）")
    rule_name: str | None
    tagged_by_id: int | None
    tagged_by_name: str | None
    tagged_at: datetime

    @staticmethod
    def resolve_rule_name(obj: CustomerTag) -> str | None:
        return obj.rule.name if obj.rule is not None else None

    @staticmethod
    def resolve_tagged_by_name(obj: CustomerTag) -> str | None:
        return obj.tagged_by.name if obj.tagged_by is not None else None


class CustomerTagsIn(In):
    tag_ids: list[Id] = Field(..., min_length=1, max_length=50)


class BulkTagIn(In):
    customer_ids: list[Id] = Field(..., min_length=1, max_length=BULK_MAX)
    add_tag_ids: list[Id] = Field(default_factory=list, max_length=50)
    remove_tag_ids: list[Id] = Field(default_factory=list, max_length=50)


class BulkTagOut(Schema):
    customers: int = Field(..., description="涉及的客户数")
    changed: int = Field(..., description="标签有变化的客户数")
    added: int = Field(..., description="新打上的标签数（单选组中被替换的计入 removed）")
    removed: int


class TagRuleOut(Schema):
    id: int
    name: str
    tag_id: int
    tag_name: str = Field(..., alias="tag.name")
    group_name: str = Field(..., alias="tag.group.name")
    conditions: dict[str, Any]
    enabled: bool
    remove_unmatched: bool = Field(..., description="客户不再满足条件时，移除本规则打的标签")
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None = Field(..., description="最近一次批量执行")
    last_run_stats: dict[str, Any] = Field(
        ...,
        description="matched 满足条件的客户数 / added 新打 / removed 移除 / replaced 单选组中替换"
        "其他规则打的标签 / kept_by_person 单选组中已有人工选择而未打 / error 条件失效的原因",
    )


class TagRuleIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    tag_id: int = Field(..., ge=1, le=DB_INT_MAX)
    conditions: dict[str, Any] = Field(..., description=CONDITIONS_HELP)
    enabled: bool = True
    remove_unmatched: bool = True


class TagRulePatch(In):
    name: str | None = Field(None, min_length=1, max_length=100)
    tag_id: int | None = Field(
        None, ge=1, le=DB_INT_MAX, description="规则尚未给任何客户打过标签时才能更换"
    )
    conditions: dict[str, Any] | None = Field(None, description=CONDITIONS_HELP)
    enabled: bool | None = None
    remove_unmatched: bool | None = None


class PreviewIn(In):
    conditions: dict[str, Any] = Field(..., description=CONDITIONS_HELP)


class PreviewOut(Schema):
    count: int = Field(..., description="满足条件、且您能看到的客户数（不含已合并的）")
    customers: list[CustomerBriefOut] = Field(..., description="其中最新登记的 20 位")


# --- the catalogue -------------------------------------------------------------------------
# Literal paths first: "/customers/{customer_id}" would take "/customers/tag-groups" for an id.


@router.get("/customers/tag-groups", response=list[TagGroupOut], summary="标签组与标签")
def list_tag_groups(request: AuthedRequest) -> QuerySet[TagGroup]:
    return services.tag_groups_list(actor=request.actor)


@router.post("/customers/tag-groups", response={201: TagGroupOut}, summary="新建标签组")
def create_tag_group(request: AuthedRequest, payload: TagGroupIn) -> Status[TagGroup]:
    group = services.tag_group_create(actor=request.actor, **payload.model_dump())
    return Status(201, _group(request, group.pk))


@router.patch("/customers/tag-groups/{group_id}", response=TagGroupOut, summary="修改标签组")
def update_tag_group(request: AuthedRequest, group_id: int, payload: TagGroupPatch) -> TagGroup:
    changes = patch_changes(payload, not_null=("name", "choice", "description", "sort"))
    services.tag_group_update(actor=request.actor, group_id=group_id, changes=changes)
    return _group(request, group_id)


@router.delete(
    "/customers/tag-groups/{group_id}",
    response={204: None},
    summary="删除标签组（须先删除组内标签）",
)
def delete_tag_group(request: AuthedRequest, group_id: int) -> Status[None]:
    services.tag_group_delete(actor=request.actor, group_id=group_id)
    return Status(204, None)


@router.post(
    "/customers/tag-groups/{group_id}/tags", response={201: TagOut}, summary="在标签组中新建标签"
)
def create_tag(request: AuthedRequest, group_id: int, payload: TagIn) -> Status[Any]:
    tag = services.tag_create(actor=request.actor, group_id=group_id, **payload.model_dump())
    return Status(201, tag)


# Before "/customers/tags/{tag_id}", which would take "bulk" for a tag id.
@router.post(
    "/customers/tags/bulk",
    response=BulkTagOut,
    summary=f"批量打标签 / 去标签（最多 {BULK_MAX} 位客户；全部成功或全部不做）",
)
def bulk_tag(request: AuthedRequest, payload: BulkTagIn) -> dict[str, int]:
    return services.customers_tag_bulk(actor=request.actor, **payload.model_dump())


@router.patch("/customers/tags/{tag_id}", response=TagOut, summary="修改标签")
def update_tag(request: AuthedRequest, tag_id: int, payload: TagPatch) -> Any:
    changes = patch_changes(payload, not_null=("name", "color", "sort"))
    return services.tag_update(actor=request.actor, tag_id=tag_id, changes=changes)


@router.delete(
    "/customers/tags/{tag_id}",
    response={204: None},
    summary="删除标签：有规则使用时拒绝；有客户带此标签时须加 force=true（一并移除）",
)
def delete_tag(request: AuthedRequest, tag_id: int, force: bool = False) -> Status[None]:
    services.tag_delete(actor=request.actor, tag_id=tag_id, force=force)
    return Status(204, None)


def _group(request: AuthedRequest, group_id: int) -> TagGroup:
    return services.tag_groups_list(actor=request.actor).get(pk=group_id)


# --- rules ---------------------------------------------------------------------------------


@router.get("/customers/tag-rules", response=list[TagRuleOut], summary="自动标签规则")
def list_tag_rules(request: AuthedRequest) -> QuerySet[TagRule]:
    return services.tag_rules_list(actor=request.actor)


@router.post("/customers/tag-rules", response={201: TagRuleOut}, summary="新建自动标签规则")
def create_tag_rule(request: AuthedRequest, payload: TagRuleIn) -> Status[TagRule]:
    rule = services.tag_rule_create(actor=request.actor, **payload.model_dump())
    return Status(201, services.tag_rule_get(actor=request.actor, rule_id=rule.pk))


@router.post(
    "/customers/tag-rules/preview",
    response=PreviewOut,
    summary="试算条件：满足的客户数与前 20 位（只含您能看到的），不打标签",
)
def preview_tag_rule(request: AuthedRequest, payload: PreviewIn) -> dict[str, Any]:
    count, first = services.tag_rule_preview(
        actor=request.actor, conditions_data=payload.conditions
    )
    return {"count": count, "customers": first}


@router.get("/customers/tag-rules/{rule_id}", response=TagRuleOut, summary="自动标签规则详情")
def get_tag_rule(request: AuthedRequest, rule_id: int) -> TagRule:
    return services.tag_rule_get(actor=request.actor, rule_id=rule_id)


@router.patch("/customers/tag-rules/{rule_id}", response=TagRuleOut, summary="修改自动标签规则")
def update_tag_rule(request: AuthedRequest, rule_id: int, payload: TagRulePatch) -> TagRule:
    changes = patch_changes(
        payload, not_null=("name", "tag_id", "conditions", "enabled", "remove_unmatched")
    )
    return services.tag_rule_update(actor=request.actor, rule_id=rule_id, changes=changes)


@router.delete(
    "/customers/tag-rules/{rule_id}",
    response={204: None},
    summary="删除自动标签规则（remove_tags=true 时一并移除它打的标签，否则保留）",
)
def delete_tag_rule(
    request: AuthedRequest, rule_id: int, remove_tags: bool = False
) -> Status[None]:
    services.tag_rule_delete(actor=request.actor, rule_id=rule_id, remove_tags=remove_tags)
    return Status(204, None)


@router.post(
    "/customers/tag-rules/{rule_id}/run",
    response=TagRuleOut,
    summary="立即对全部客户执行该规则（结果见 last_run_stats）",
)
def run_tag_rule(request: AuthedRequest, rule_id: int) -> TagRule:
    return services.rule_run(actor=request.actor, rule_id=rule_id)


# --- tags on a customer --------------------------------------------------------------------


@router.get(
    "/customers/{customer_id}/tags",
    response=list[CustomerTagOut],
    summary="客户的标签（谁或哪条规则、何时打的）",
)
def list_customer_tags(request: AuthedRequest, customer_id: int) -> QuerySet[CustomerTag]:
    return services.customer_tags_list(actor=request.actor, customer_id=customer_id)


@router.post(
    "/customers/{customer_id}/tags",
    response=list[CustomerTagOut],
    summary="给客户打标签（单选组中的新标签替换原有的）；返回客户的全部标签",
)
def add_customer_tags(
    request: AuthedRequest, customer_id: int, payload: CustomerTagsIn
) -> QuerySet[CustomerTag]:
    customer: Customer = services.customer_tags_add(
        actor=request.actor, customer_id=customer_id, tag_ids=payload.tag_ids
    )
    return services.customer_tags_list(actor=request.actor, customer_id=customer.pk)


@router.delete(
    "/customers/{customer_id}/tags/{tag_id}",
    response={204: None},
    summary="移除客户的标签（规则打的标签，若客户仍满足规则，会在下次评估时重新打上）",
)
def remove_customer_tag(request: AuthedRequest, customer_id: int, tag_id: int) -> Status[None]:
    services.customer_tag_remove(actor=request.actor, customer_id=customer_id, tag_id=tag_id)
    return Status(204, None)
