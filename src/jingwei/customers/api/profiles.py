"""Customer API: customers and their identities, merge candidates, merges and un-merges. Thin:
parse, call a service or a selector, serialise. Identity values and phones are masked for readers
without customer.view_pii."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from jingwei.core.api import DB_INT_MAX, AuthedRequest, Filters, In, Page
from jingwei.core.errors import Invalid
from jingwei.core.pii import MaskedPhone

from .. import selectors, services
from ..identities import VALUE_MAX, IdentityInput, present_identity
from ..models import Customer, Identity, MergeCandidate, MergeRecord

# Mounted at the API root (see jingwei.api) with full paths, so that the list lives at
# /api/customers itself rather than at /api/customers/ or under a sub-path.
router = Router(tags=["客户"])

Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
OptionalId = Field(None, ge=1, le=DB_INT_MAX)
CustomerKindName = Literal["person", "company"]
LevelName = Literal["vip", "normal", "potential"]
IdentityKindName = Literal[
    "phone", "email", "wecom", "wechat_unionid", "wechat_openid", "shop_buyer", "other"
]
IDENTITY_KINDS_HELP = (
    "phone 手机号 / email 邮箱 / wecom 企业微信外部联系人 external_userid / wechat_unionid / "
    "wechat_openid（namespace 填 AppID）/ shop_buyer 店铺买家（namespace 填平台，如 taobao）/ other"
)


# --- schemas -------------------------------------------------------------------------------


class IdentityOut(Schema):
    id: int
    kind: str
    namespace: str
    value: str = Field(..., description="规范化后的值；没有 customer.view_pii 权限时打码")
    verified: bool
    source: str
    status: str
    first_seen_at: datetime
    last_seen_at: datetime
    removed_at: datetime | None

    @staticmethod
    def resolve_value(obj: Identity, context: Any) -> str:
        request = (context or {}).get("request")
        return present_identity(obj.kind, obj.value, getattr(request, "actor", None))


def _main_phone(obj: Customer) -> str | None:
    phones = getattr(obj, "active_phones", None)
    if phones is None:
        phones = list(obj.identities.filter(kind="phone", status="active").order_by("id")[:1])
    return phones[0].value if phones else None


class CustomerBriefOut(Schema):
    id: int
    kind: str
    name: str
    company_name: str
    phone: MaskedPhone = Field(None, description="主手机号（最早登记的有效手机号）")
    region_id: int | None
    owner_id: int | None

    @staticmethod
    def resolve_phone(obj: Customer) -> str | None:
        return _main_phone(obj)


class CustomerOut(CustomerBriefOut):
    department_id: int | None
    level: str
    source: str
    remark: str
    collaborator_ids: list[int]
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_collaborator_ids(obj: Customer) -> list[int]:
        return sorted(c.employee_id for c in obj.collaborations.all())


class CustomerDetailOut(CustomerOut):
    identities: list[IdentityOut]
    merged_from: list[int] = Field(..., description="已合并进来的客户编号")
    redirected_from: int | None = Field(
        None, description="请求的是已合并的客户编号时，为该编号（返回的是合并后的客户）"
    )

    @staticmethod
    def resolve_identities(obj: Customer) -> QuerySet[Identity]:
        return selectors.identities_of(obj)

    @staticmethod
    def resolve_merged_from(obj: Customer) -> list[int]:
        return selectors.merged_from(obj)

    @staticmethod
    def resolve_redirected_from(obj: Customer) -> int | None:
        return getattr(obj, "redirected_from", None)


class CustomerCreatedOut(CustomerDetailOut):
    outcome: Literal["created", "matched"] = Field(
        ..., description="created 新建了客户；matched 按身份找到了已有客户，新身份已加到该客户"
    )
    merge_candidate_ids: list[int] = Field(
        ..., description="本次登记产生或命中的疑似重复记录（仅含您能看到的）"
    )


class IdentityIn(In):
    kind: IdentityKindName = Field(..., description=IDENTITY_KINDS_HELP)
    value: str = Field(..., min_length=1, max_length=VALUE_MAX)
    namespace: str = Field("", max_length=100, description="平台或 AppID；手机号、邮箱不填")
    verified: bool = False
    source: str = Field("", max_length=50, description="从哪里得知，如 manual、import、wecom")

    def to_input(self) -> IdentityInput:
        return IdentityInput(**self.model_dump())


class CustomerIn(In):
    kind: CustomerKindName = "person"
    name: str = Field(..., min_length=1, max_length=100)
    company_name: str = Field("", max_length=200)
    region_id: int | None = OptionalId
    department_id: int | None = OptionalId
    owner_id: int | None = Field(None, ge=1, le=DB_INT_MAX, description="不填则为自己")
    level: LevelName = "normal"
    source: str = Field("", max_length=50, description="来源渠道，如 企业微信、淘宝、官网、门店")
    remark: str = Field("", max_length=500)
    collaborator_ids: list[Id] = Field(default_factory=list, max_length=50)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=20)


class CustomerPatch(In):
    kind: CustomerKindName | None = None
    name: str | None = Field(None, min_length=1, max_length=100)
    company_name: str | None = Field(None, max_length=200)
    region_id: int | None = OptionalId
    department_id: int | None = OptionalId
    owner_id: int | None = OptionalId
    level: LevelName | None = None
    source: str | None = Field(None, max_length=50)
    remark: str | None = Field(None, max_length=500)
    collaborator_ids: list[Id] | None = Field(None, max_length=50, description="整体替换协作人")


class CustomerFilters(Filters):
    q: str | None = Field(
        None, max_length=50, description="名称、公司名称包含；或手机号包含（至少 4 位数字）"
    )
    region_id: int | None = Field(None, ge=1, le=DB_INT_MAX, description="区域（含下级）")
    department_id: int | None = Field(None, ge=1, le=DB_INT_MAX, description="部门（含下级）")
    owner_id: int | None = Field(None, ge=1, le=DB_INT_MAX, description="负责人")
    level: LevelName | None = None
    kind: CustomerKindName | None = None
    source: str | None = Field(None, max_length=50)


class CandidateOut(Schema):
    id: int
    customer: CustomerBriefOut = Field(..., description="较早登记的客户（默认保留）")
    other: CustomerBriefOut
    reason: str
    reason_label: str = Field(..., alias="get_reason_display")
    score: int = Field(..., description="相似度 0—100")
    status: str
    note: str
    decided_by_id: int | None
    decided_at: datetime | None
    created_at: datetime


class CandidateFilters(Filters):
    status: Literal["proposed", "accepted", "rejected"] | None = "proposed"
    customer_id: int | None = Field(None, ge=1, le=DB_INT_MAX, description="涉及该客户的")


class AcceptIn(In):
    keep_id: int | None = Field(
        None, ge=1, le=DB_INT_MAX, description="保留哪一位（两位之一）；不填则保留较早登记的"
    )
    note: str = Field("", max_length=200)


class RejectIn(In):
    note: str = Field("", max_length=200)


class MergeIn(In):
    source_id: int = Field(
        ..., ge=1, le=DB_INT_MAX, description="被合并的客户（合并后不再单独列出）"
    )
    reason: str = Field("", max_length=200)


class UndoIn(In):
    reason: str = Field("", max_length=200)


class MergeOut(Schema):
    id: int
    target_id: int
    source_id: int
    candidate_id: int | None
    reason: str
    moved: dict[str, list[int]] = Field(..., description="移动到目标客户的记录编号，按类别")
    filled_fields: list[str] = Field(..., description="用被合并客户的信息补全的空白字段")
    merged_by_id: int | None
    merged_at: datetime
    undone_by_id: int | None
    undone_at: datetime | None
    undo_reason: str

    @staticmethod
    def resolve_filled_fields(obj: MergeRecord) -> list[str]:
        return sorted(obj.filled)


# --- customers -----------------------------------------------------------------------------


@router.get(
    "/customers", response=list[CustomerOut], summary="客户列表（按数据范围，不含已合并的）"
)
@paginate(Page)
def list_customers(request: AuthedRequest, filters: Query[CustomerFilters]) -> QuerySet[Customer]:
    return selectors.customer_list(request.actor, selectors.CustomerFilters(**filters.model_dump()))


@router.post(
    "/customers",
    response={201: CustomerCreatedOut},
    summary="登记客户：按身份找到已有客户则归并到该客户，否则新建",
)
def create_customer(request: AuthedRequest, payload: CustomerIn) -> Status[Customer]:
    data = payload.model_dump(exclude={"identities", "collaborator_ids"})
    result = services.customer_resolve(
        actor=request.actor,
        identities=[i.to_input() for i in payload.identities],
        profile=data,
        collaborator_ids=payload.collaborator_ids,
        source="api",
    )
    customer = selectors.customer_read(request.actor, result.customer.pk)
    visible = selectors.candidate_list(request.actor, status=None, customer_id=customer.pk)
    customer.outcome = result.outcome  # type: ignore[attr-defined]
    customer.merge_candidate_ids = sorted(  # type: ignore[attr-defined]
        visible.filter(pk__in=[c.pk for c in result.candidates]).values_list("pk", flat=True)
    )
    return Status(201, customer)


# Literal paths before "/customers/{customer_id}", which would otherwise take them for an id.


@router.get(
    "/customers/merge-candidates",
    response=list[CandidateOut],
    summary="疑似重复客户（默认只看待处理的）",
)
@paginate(Page)
def list_candidates(
    request: AuthedRequest, filters: Query[CandidateFilters]
) -> QuerySet[MergeCandidate]:
    return selectors.candidate_list(
        request.actor, status=filters.status, customer_id=filters.customer_id
    )


@router.post(
    "/customers/merge-candidates/{candidate_id}/accept",
    response={201: MergeOut},
    summary="确认是同一客户：合并（默认保留较早登记的）",
)
def accept_candidate(
    request: AuthedRequest, candidate_id: int, payload: AcceptIn
) -> Status[MergeRecord]:
    merge = services.candidate_accept(
        actor=request.actor, candidate_id=candidate_id, **payload.model_dump()
    )
    return Status(201, merge)


@router.post(
    "/customers/merge-candidates/{candidate_id}/reject",
    response=CandidateOut,
    summary="不是同一客户：忽略，之后不再提示",
)
def reject_candidate(request: AuthedRequest, candidate_id: int, payload: RejectIn) -> Any:
    services.candidate_reject(actor=request.actor, candidate_id=candidate_id, note=payload.note)
    return selectors.candidate_list(request.actor, status=None, customer_id=None).get(
        pk=candidate_id
    )


@router.post("/customers/merges/{merge_id}/undo", response=MergeOut, summary="拆分（撤销合并）")
def undo_merge(request: AuthedRequest, merge_id: int, payload: UndoIn) -> MergeRecord:
    return services.merge_undo(actor=request.actor, merge_id=merge_id, reason=payload.reason)


@router.get(
    "/customers/{customer_id}",
    response=CustomerDetailOut,
    summary="客户详情（含身份）；已合并客户的编号返回合并后的客户",
)
def get_customer(request: AuthedRequest, customer_id: int) -> Customer:
    return selectors.customer_read(request.actor, customer_id)


@router.patch("/customers/{customer_id}", response=CustomerDetailOut, summary="修改客户")
def update_customer(request: AuthedRequest, customer_id: int, payload: CustomerPatch) -> Customer:
    changes = payload.model_dump(exclude_unset=True)
    for name in ("kind", "name", "level", "company_name", "source", "remark", "collaborator_ids"):
        if name in changes and changes[name] is None:
            raise Invalid(f"{name} 不能为空", code="required", field=name)
    services.customer_update(actor=request.actor, customer_id=customer_id, changes=changes)
    return selectors.customer_read(request.actor, customer_id)


@router.post(
    "/customers/{customer_id}/identities",
    response={201: IdentityOut},
    summary="添加身份（客户已有的同一身份视为再次出现，不报错）",
)
def add_identity(request: AuthedRequest, customer_id: int, payload: IdentityIn) -> Status[Identity]:
    identity = services.identity_add(
        actor=request.actor, customer_id=customer_id, identity=payload.to_input()
    )
    return Status(201, identity)


@router.delete(
    "/customers/{customer_id}/identities/{identity_id}",
    response={204: None},
    summary="移除身份（保留历史，该身份可再登记给其他客户）",
)
def remove_identity(request: AuthedRequest, customer_id: int, identity_id: int) -> Status[None]:
    services.identity_remove(actor=request.actor, customer_id=customer_id, identity_id=identity_id)
    return Status(204, None)


@router.post(
    "/customers/{customer_id}/merge",
    response={201: MergeOut},
    summary="把另一位客户合并到本客户（身份等随之移动，可拆分）",
)
def merge_customer(
    request: AuthedRequest, customer_id: int, payload: MergeIn
) -> Status[MergeRecord]:
    merge = services.customer_merge(
        actor=request.actor,
        target_id=customer_id,
        source_id=payload.source_id,
        reason=payload.reason,
    )
    return Status(201, merge)


@router.get(
    "/customers/{customer_id}/merges",
    response=list[MergeOut],
    summary="合并记录（最新在前，拆分按此顺序）",
)
def list_merges(request: AuthedRequest, customer_id: int) -> QuerySet[MergeRecord]:
    return selectors.merges_of(request.actor, customer_id)
