"""Opportunities (商机) and the tickets linked to them."""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from jingwei.core.api import DB_INT_MAX, AuthedRequest, Filters, In, Page
from jingwei.org.api import patch_changes

from .. import services
from ..models import Opportunity

router = Router(tags=["商机"])

Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
OptionalId = Field(None, ge=1, le=DB_INT_MAX)
StageName = Literal["lead", "qualified", "proposal", "negotiation", "won", "lost"]


def _day_text(value: Any) -> Any:
    # A number is not a date (pydantic's lax mode would read it as Unix seconds).
    if isinstance(value, date) or (
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)
    ):
        return value
    raise PydanticCustomError("date_type", "an ISO 8601 date (YYYY-MM-DD) is required")


# A calendar day: text YYYY-MM-DD.
Day = Annotated[date, BeforeValidator(_day_text)]

# Money travels as a decimal string (never a JSON number, which is a float to most clients).
Amount = Annotated[
    str, Field(pattern=r"^\d{1,12}(\.\d{1,2})?$", description='金额（十进制字符串，如 "12000.50"）')
]


class OpportunityOut(Schema):
    id: int
    title: str
    customer_id: int
    stage: str
    amount: Decimal | None
    currency: str
    source: str
    owner_id: int | None
    region_id: int | None
    expected_close: date | None
    from_ticket_id: int | None
    ticket_ids: list[int]
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_ticket_ids(obj: Opportunity) -> list[int]:
        return sorted(obj.tickets.values_list("pk", flat=True))


class OpportunityIn(In):
    title: str = Field(..., min_length=1, max_length=200)
    customer_id: Id
    stage: StageName = "lead"
    amount: Amount | None = None
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")
    source: str = Field("", max_length=50)
    owner_id: int | None = OptionalId
    region_id: int | None = OptionalId
    expected_close: Day | None = None


class OpportunityPatch(In):
    title: str | None = Field(None, min_length=1, max_length=200)
    stage: StageName | None = None
    amount: Amount | None = None
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    source: str | None = Field(None, max_length=50)
    owner_id: int | None = OptionalId
    region_id: int | None = OptionalId
    expected_close: Day | None = None


class OpportunityFilters(Filters):
    stage: StageName | None = None
    customer_id: int | None = OptionalId
    owner_id: int | None = OptionalId


@router.get("/opportunities", response=list[OpportunityOut], summary="商机列表（按数据范围）")
@paginate(Page)
def list_opportunities(
    request: AuthedRequest, filters: Query[OpportunityFilters]
) -> QuerySet[Opportunity]:
    qs = services.opportunities_visible(request.actor)
    for name, value in filters.model_dump(exclude_none=True).items():
        qs = qs.filter(**{name: value})
    return qs


@router.post("/opportunities", response={201: OpportunityOut}, summary="新建商机")
def create_opportunity(request: AuthedRequest, payload: OpportunityIn) -> Status[Opportunity]:
    return Status(201, services.opportunity_create(actor=request.actor, **payload.model_dump()))


@router.get(
    "/opportunities/{opportunity_id}", response=OpportunityOut, summary="商机详情（含关联工单）"
)
def get_opportunity(request: AuthedRequest, opportunity_id: int) -> Opportunity:
    return services.opportunity_get(actor=request.actor, opportunity_id=opportunity_id)


@router.patch(
    "/opportunities/{opportunity_id}",
    response=OpportunityOut,
    summary="修改商机（阶段、金额、负责人…）",
)
def update_opportunity(
    request: AuthedRequest, opportunity_id: int, payload: OpportunityPatch
) -> Opportunity:
    return services.opportunity_update(
        actor=request.actor,
        opportunity_id=opportunity_id,
        changes=patch_changes(payload, not_null=("title", "stage", "currency")),
    )
