"""Customer API: owners, region pools (公海), follow-ups and handovers (离职继承 / 在职转接). Thin:
parse, call a service, serialise. Customer lists reuse the customer list schema (phones masked
for readers without customer.view_pii)."""

from datetime import datetime
from typing import Annotated, Literal

from django.db.models import QuerySet
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import StrictBool

from jingwei.core.api import DB_INT_MAX, AuthedRequest, Filters, In, Moment, Page
from jingwei.core.errors import Invalid

from ..models import Customer, CustomerPool, FollowUp, Handover, OwnershipChange
from ..services import follow_ups, handover, ownership, pools
from .profiles import CustomerOut

# Mounted before the profiles router: "/customers/pools" and "/customers/handovers" would
# otherwise be taken for "/customers/{customer_id}".
router = Router(tags=["客户负责人、公海与跟进"])

Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
FollowUpKindName = Literal["call", "visit", "wecom", "meeting", "other"]
HandoverKindName = Literal["resignation", "transfer"]


# --- schemas -------------------------------------------------------------------------------


class PoolIn(In):
    region_id: int = Field(..., ge=1, le=DB_INT_MAX, description="公海所属区域（每个区域一个）")
    name: str = Field("", max_length=50, description="不填则为「<区域名>公海」")
    claim_limit: int = Field(
        50, ge=0, le=100_000, description="每人最多同时负责该公海的客户数；0 为不限"
    )
    daily_claim_limit: int = Field(
        20, ge=0, le=100_000, description="每人每天最多领取数（按区域时区的自然日）；0 为不限"
    )
    return_after_days: int = Field(
        30, ge=0, le=3650, description="负责人超过这么多天未跟进，客户自动退回公海；0 为不退回"
    )
    # Strict: JSON true/false only (0 or "no" would otherwise be read as a boolean).
    enabled: StrictBool = Field(True, description="停用后不能领取，也不自动退回")


class PoolPatch(In):
    region_id: int | None = Field(None, ge=1, le=DB_INT_MAX)
    name: str | None = Field(None, min_length=1, max_length=50)
    claim_limit: int | None = Field(None, ge=0, le=100_000)
    daily_claim_limit: int | None = Field(None, ge=0, le=100_000)
    return_after_days: int | None = Field(None, ge=0, le=3650)
    enabled: StrictBool | None = None


class PoolOut(Schema):
    id: int
    region_id: int
    region_name: str
    name: str
    claim_limit: int
    daily_claim_limit: int
    return_after_days: int
    enabled: bool
    unclaimed_count: int = Field(..., description="公海中待领取的客户数")
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_region_name(obj: CustomerPool) -> str:
        return obj.region.name


class PoolCustomerFilters(Filters):
    q: str | None = Field(None, max_length=50, description="名称或公司名称包含")


class CustomerOwnedOut(CustomerOut):
    owned_since: datetime | None = Field(..., description="领取/分配时间")
    last_followed_at: datetime | None
    next_follow_up_at: datetime | None


class ReleaseIn(In):
    reason: str = Field(..., min_length=1, max_length=200, description="放回公海的原因")


class AssignIn(In):
    employee_id: int = Field(..., ge=1, le=DB_INT_MAX, description="新负责人")
    reason: str = Field("", max_length=200)


class FollowUpIn(In):
    kind: FollowUpKindName = Field(
        "call", description="call 电话 / visit 上门拜访 / wecom 企业微信 / meeting 会议 / other"
    )
    content: str = Field(..., min_length=1, max_length=2000)
    happened_at: Moment | None = Field(None, description="跟进时间，不填为现在；不能晚于现在")
    next_at: Moment | None = Field(None, description="下次跟进时间（须晚于现在），到时提醒负责人")


class FollowUpOut(Schema):
    id: int
    customer_id: int
    employee_id: int | None
    employee_name: str
    kind: str
    kind_label: str = Field(..., alias="get_kind_display")
    content: str
    happened_at: datetime
    next_at: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_employee_name(obj: FollowUp) -> str:
        return obj.employee.name if obj.employee is not None else ""


class OwnershipChangeOut(Schema):
    id: int
    customer_id: int
    kind: str
    kind_label: str = Field(..., alias="get_kind_display")
    from_owner_id: int | None
    from_owner_name: str
    to_owner_id: int | None
    to_owner_name: str
    reason: str
    handover_id: int | None
    by_id: int | None = Field(..., description="操作人；系统自动退回时为空")
    at: datetime

    @staticmethod
    def resolve_from_owner_name(obj: OwnershipChange) -> str:
        return obj.from_owner.name if obj.from_owner is not None else ""

    @staticmethod
    def resolve_to_owner_name(obj: OwnershipChange) -> str:
        return obj.to_owner.name if obj.to_owner is not None else ""


class HandoverIn(In):
    kind: HandoverKindName = Field(..., description="resignation 离职继承 / transfer 在职转接")
    from_employee_id: int = Field(..., ge=1, le=DB_INT_MAX, description="交出客户的员工")
    to_employee_id: int = Field(..., ge=1, le=DB_INT_MAX, description="接手的员工（在职）")
    reason: str = Field(..., min_length=1, max_length=200)
    customer_ids: list[Id] | None = Field(
        None, max_length=5000, description="交接哪些客户；不填为该员工名下全部客户"
    )
    rest_to_pool: StrictBool = Field(
        False, description="该员工其余（未交接的）客户退回所在区域的公海；没有公海的仍交给接手人"
    )


class HandoverOut(Schema):
    id: int
    kind: str
    kind_label: str = Field(..., alias="get_kind_display")
    from_employee_id: int
    from_employee_name: str
    to_employee_id: int
    to_employee_name: str
    reason: str
    customer_count: int = Field(..., description="交给接手人的客户数")
    by_id: int | None
    at: datetime

    @staticmethod
    def resolve_from_employee_name(obj: Handover) -> str:
        return obj.from_employee.name

    @staticmethod
    def resolve_to_employee_name(obj: Handover) -> str:
        return obj.to_employee.name


class HandoverFilters(Filters):
    employee_id: int | None = Field(None, ge=1, le=DB_INT_MAX, description="交出或接手的员工")
    kind: HandoverKindName | None = None


# --- pools ---------------------------------------------------------------------------------


@router.get("/customers/pools", response=list[PoolOut], summary="公海列表（可见或可管理的）")
@paginate(Page)
def list_pools(request: AuthedRequest) -> list[CustomerPool]:
    return pools.pool_list(request.actor)


@router.post("/customers/pools", response={201: PoolOut}, summary="开设区域公海")
def create_pool(request: AuthedRequest, payload: PoolIn) -> Status[CustomerPool]:
    pool = pools.pool_create(actor=request.actor, **payload.model_dump())
    return Status(201, pools.pool_get(request.actor, pool.pk))


@router.get("/customers/pools/{pool_id}", response=PoolOut, summary="公海详情")
def get_pool(request: AuthedRequest, pool_id: int) -> CustomerPool:
    return pools.pool_get(request.actor, pool_id)


@router.patch("/customers/pools/{pool_id}", response=PoolOut, summary="修改公海规则")
def update_pool(request: AuthedRequest, pool_id: int, payload: PoolPatch) -> CustomerPool:
    changes = payload.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None:
            raise Invalid(f"{name} 不能为空", code="required", field=name)
    pools.pool_update(actor=request.actor, pool_id=pool_id, changes=changes)
    return pools.pool_get(request.actor, pool_id)


@router.delete("/customers/pools/{pool_id}", response={204: None}, summary="关闭公海")
def delete_pool(request: AuthedRequest, pool_id: int) -> Status[None]:
    pools.pool_delete(actor=request.actor, pool_id=pool_id)
    return Status(204, None)


@router.get(
    "/customers/pools/{pool_id}/customers",
    response=list[CustomerOut],
    summary="公海中待领取的客户",
)
@paginate(Page)
def list_pool_customers(
    request: AuthedRequest, pool_id: int, filters: Query[PoolCustomerFilters]
) -> QuerySet[Customer]:
    return pools.pool_customers(request.actor, pool_id, q=filters.q)


# --- follow-ups and handovers (literal paths, before "/customers/{customer_id}/…") ----------


@router.get(
    "/customers/follow-ups/due",
    response=list[CustomerOwnedOut],
    summary="我的待跟进客户（下次跟进在今天结束前，含已逾期）",
)
@paginate(Page)
def list_due_follow_ups(request: AuthedRequest) -> QuerySet[Customer]:
    return follow_ups.follow_ups_due(request.actor)


@router.get("/customers/handovers", response=list[HandoverOut], summary="客户交接记录")
@paginate(Page)
def list_handovers(request: AuthedRequest, filters: Query[HandoverFilters]) -> QuerySet[Handover]:
    return handover.handover_list(request.actor, **filters.model_dump())


@router.post(
    "/customers/handovers",
    response={201: HandoverOut},
    summary="离职继承 / 在职转接：一次交接一位员工的客户",
)
def create_handover(request: AuthedRequest, payload: HandoverIn) -> Status[Handover]:
    created = handover.handover_create(actor=request.actor, **payload.model_dump())
    return Status(201, created)


# --- one customer --------------------------------------------------------------------------


@router.post("/customers/{customer_id}/claim", response=CustomerOwnedOut, summary="从公海领取客户")
def claim_customer(request: AuthedRequest, customer_id: int) -> Customer:
    return pools.customer_claim(actor=request.actor, customer_id=customer_id)


@router.post(
    "/customers/{customer_id}/release", response=CustomerOwnedOut, summary="把客户放回公海"
)
def release_customer(request: AuthedRequest, customer_id: int, payload: ReleaseIn) -> Customer:
    return pools.customer_release(
        actor=request.actor, customer_id=customer_id, reason=payload.reason
    )


@router.post("/customers/{customer_id}/assign", response=CustomerOwnedOut, summary="分配负责人")
def assign_customer(request: AuthedRequest, customer_id: int, payload: AssignIn) -> Customer:
    return ownership.customer_assign(
        actor=request.actor, customer_id=customer_id, **payload.model_dump()
    )


@router.get(
    "/customers/{customer_id}/ownership",
    response=list[OwnershipChangeOut],
    summary="负责人变更记录（最新在前）",
)
@paginate(Page)
def list_ownership(request: AuthedRequest, customer_id: int) -> QuerySet[OwnershipChange]:
    return ownership.ownership_history(request.actor, customer_id)


@router.post(
    "/customers/{customer_id}/follow-ups",
    response={201: FollowUpOut},
    summary="记录跟进（可约定下次跟进，到时提醒负责人）",
)
def create_follow_up(
    request: AuthedRequest, customer_id: int, payload: FollowUpIn
) -> Status[FollowUp]:
    created = follow_ups.follow_up_record(
        actor=request.actor, customer_id=customer_id, **payload.model_dump()
    )
    return Status(201, created)


@router.get(
    "/customers/{customer_id}/follow-ups",
    response=list[FollowUpOut],
    summary="跟进记录（最新在前）",
)
@paginate(Page)
def list_follow_ups(request: AuthedRequest, customer_id: int) -> QuerySet[FollowUp]:
    return follow_ups.follow_up_list(request.actor, customer_id)
