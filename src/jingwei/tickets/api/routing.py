"""Queues, routing rules, their dry run, and service mailboxes."""

from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from ninja import Field, Router, Schema, Status
from pydantic import StrictBool

from jingwei.core.api import DB_INT_MAX, AuthedRequest, In

from .. import services
from ..models import Mailbox, Queue, RoutingRule
from ..services import routing as routing_rules
from ..services.common import MANAGE

router = Router(tags=["工单路由"])

Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
OptionalId = Field(None, ge=1, le=DB_INT_MAX)
CONDITIONS_HELP = (
    "条件：{field, op, value} / {all: [..]} / {any: [..]} / {not: ..}；{} 表示所有工单。"
    "field: source、template、category、priority、customer_level、region、answers.<字段>；"
    "op: eq ne in not_in within(区域) contains gt gte lt lte empty not_empty"
)
ASSIGNMENT_HELP = (
    '{"rule": "none" | "user" | "least_loaded" | "round_robin" | "customer_owner", '
    '"employee_id": 指定人员, "fallback": 客户没有专属顾问时的规则}'
)


class QueueOut(Schema):
    id: int
    name: str
    region_id: int | None
    member_ids: list[int]

    @staticmethod
    def resolve_member_ids(obj: Queue) -> list[int]:
        return sorted(m.employee_id for m in obj.memberships.all())


class QueueIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    region_id: int | None = OptionalId
    member_ids: list[Id] = Field(default_factory=list, max_length=500)


class RuleOut(Schema):
    id: int
    name: str
    position: int
    conditions: dict[str, Any]
    queue_id: int | None
    assignment: dict[str, Any]
    priority: str
    is_active: bool


class RuleIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    conditions: dict[str, Any] = Field(default_factory=dict, description=CONDITIONS_HELP)
    queue_id: int | None = OptionalId
    assignment: dict[str, Any] | None = Field(None, description=ASSIGNMENT_HELP)
    priority: Literal["", "S", "A", "B", "C"] = ""
    position: int | None = Field(None, ge=1, le=1_000_000, description="顺序：小的先试")
    is_active: StrictBool = True


class DryRunIn(In):
    template: str = Field(..., min_length=1, max_length=60)
    source: Literal["console", "api", "public_form", "email", "wecom", "shop", "phone"] = "console"
    region_id: int | None = OptionalId
    customer_id: int | None = OptionalId
    priority: Literal["S", "A", "B", "C"] | None = None
    answers: dict[str, Any] = Field(default_factory=dict)


class TraceOut(Schema):
    rule_id: int
    name: str
    matched: bool
    reasons: list[str]


class DryRunOut(Schema):
    rule_id: int | None
    rule_name: str | None
    queue_id: int | None
    owner_id: int | None
    priority: str
    explanation: str
    trace: list[TraceOut]


class MailboxIn(In):
    address: str = Field(..., min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    template_id: Id
    region_id: int | None = OptionalId
    active: StrictBool = True


class MailboxOut(Schema):
    id: int
    address: str
    template_id: int
    region_id: int | None
    is_active: bool


@router.get("/tickets/queues", response=list[QueueOut], summary="工单队列")
def list_queues(request: AuthedRequest) -> QuerySet[Queue]:
    return services.queues_visible(request.actor)


@router.post("/tickets/queues", response={201: QueueOut}, summary="新建队列")
def create_queue(request: AuthedRequest, payload: QueueIn) -> Status[Queue]:
    return Status(201, services.queue_save(actor=request.actor, **payload.model_dump()))


@router.put("/tickets/queues/{queue_id}", response=QueueOut, summary="修改队列（名称、区域、成员）")
def update_queue(request: AuthedRequest, queue_id: int, payload: QueueIn) -> Queue:
    return services.queue_save(actor=request.actor, queue_id=queue_id, **payload.model_dump())


@router.get("/tickets/routing-rules", response=list[RuleOut], summary="路由规则（按顺序）")
def list_rules(request: AuthedRequest) -> QuerySet[RoutingRule]:
    return services.rules_visible(request.actor)


@router.post("/tickets/routing-rules", response={201: RuleOut}, summary="新建路由规则")
def create_rule(request: AuthedRequest, payload: RuleIn) -> Status[RoutingRule]:
    return Status(201, services.rule_save(actor=request.actor, **payload.model_dump()))


# Before /tickets/routing-rules/{rule_id}, which would otherwise take "dry-run" as an id (405).
@router.post(
    "/tickets/routing-rules/dry-run",
    response=DryRunOut,
    summary="试运行：这样一张工单会命中哪条规则、为什么（不建工单）",
)
def dry_run(request: AuthedRequest, payload: DryRunIn) -> dict[str, Any]:
    from jingwei.core.errors import Invalid
    from jingwei.customers.models import Customer
    from jingwei.org.models import Region

    request.actor.require(MANAGE)
    tenant_id = request.actor.tenant_id
    if (
        payload.region_id is not None
        and not Region.objects.filter(tenant_id=tenant_id, pk=payload.region_id).exists()
    ):
        raise Invalid("区域不存在", code="invalid_reference", field="region_id")
    template = services.template_for(
        tenant_id=tenant_id, key=payload.template, region_id=payload.region_id
    )
    customer = None
    if payload.customer_id is not None:
        customer = (
            Customer.objects.visible_to(request.actor, "customer.view")
            .filter(pk=payload.customer_id)
            .first()
        )
        if customer is None:
            raise Invalid("客户不存在", code="invalid_reference", field="customer_id")
    version = template.current_version
    assert version is not None
    region_id = payload.region_id or (customer.region_id if customer is not None else None)
    facts = routing_rules.facts_for(
        tenant_id=tenant_id,
        source=payload.source,
        template_key=template.key,
        category=template.category,
        priority=payload.priority
        or str(payload.answers.get("urgency") or "")
        or version.default_priority,
        region_id=region_id,
        customer=customer,
        answers=payload.answers,
    )
    decision = routing_rules.route(tenant_id, facts, lock=False)
    return {
        "rule_id": decision.rule.pk if decision.rule else None,
        "rule_name": decision.rule.name if decision.rule else None,
        "queue_id": decision.queue_id,
        "owner_id": decision.owner_id,
        "priority": decision.priority,
        "explanation": decision.explanation,
        "trace": [t.__dict__ for t in decision.trace],
    }


@router.put("/tickets/routing-rules/{rule_id}", response=RuleOut, summary="修改路由规则")
def update_rule(request: AuthedRequest, rule_id: int, payload: RuleIn) -> RoutingRule:
    return services.rule_save(actor=request.actor, rule_id=rule_id, **payload.model_dump())


@router.delete("/tickets/routing-rules/{rule_id}", response={204: None}, summary="删除路由规则")
def delete_rule(request: AuthedRequest, rule_id: int) -> Status[None]:
    services.rule_delete(actor=request.actor, rule_id=rule_id)
    return Status(204, None)


@router.get("/tickets/mailboxes", response=list[MailboxOut], summary="服务邮箱")
def list_mailboxes(request: AuthedRequest) -> QuerySet[Mailbox]:
    request.actor.require(MANAGE)
    return Mailbox.objects.filter(tenant_id=request.actor.tenant_id).order_by("address")


@router.post(
    "/tickets/mailboxes", response={201: MailboxOut}, summary="设置服务邮箱（来信自动建单）"
)
def save_mailbox(request: AuthedRequest, payload: MailboxIn) -> Status[Mailbox]:
    return Status(201, services.mailbox_save(actor=request.actor, **payload.model_dump()))
