"""Opportunities (商机): a customer, a stage, an amount, a source, an owner and an expected close,
linked both ways with tickets (a ticket can create one; `Opportunity.tickets` lists its tickets)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import transaction

from jingwei.audit.services import audit_record, snapshot
from jingwei.core.errors import Forbidden, Invalid, NotFound
from jingwei.customers.models import Customer
from jingwei.org.models import Employee, Region
from jingwei.org.scope import Actor

from ..models import Opportunity, OpportunityStage, Ticket
from .common import OPPORTUNITY_EDIT, OPPORTUNITY_VIEW

CENT = Decimal("0.01")
FIELDS = (
    "title",
    "stage",
    "amount",
    "currency",
    "source",
    "owner_id",
    "expected_close",
    "region_id",
)


def _amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    amount = Decimal(str(value))
    if amount < 0 or amount != amount.quantize(CENT) or amount >= Decimal("1e12"):
        raise Invalid("金额应为不小于 0、最多两位小数的数", code="invalid", field="amount")
    return amount


def _check(tenant_id: int, data: Mapping[str, Any]) -> None:
    if "stage" in data and data["stage"] not in OpportunityStage.values:
        raise Invalid("不认识的商机阶段", code="invalid", field="stage")
    if (
        data.get("owner_id") is not None
        and not Employee.objects.filter(tenant_id=tenant_id, pk=data["owner_id"]).exists()
    ):
        raise Invalid("负责人不存在", code="invalid_reference", field="owner_id")
    if (
        data.get("region_id") is not None
        and not Region.objects.filter(tenant_id=tenant_id, pk=data["region_id"]).exists()
    ):
        raise Invalid("区域不存在", code="invalid_reference", field="region_id")
    if "currency" in data and (
        len(str(data["currency"])) != 3 or not str(data["currency"]).isupper()
    ):
        raise Invalid("币种应为 ISO 4217 三位大写代码，如 CNY", code="invalid", field="currency")


def opportunity_create_within(
    actor: Actor,
    *,
    customer_id: int,
    title: str,
    amount: Any = None,
    stage: str = OpportunityStage.LEAD,
    source: str = "",
    owner_id: int | None = None,
    expected_close: date | None = None,
    region_id: int | None = None,
    currency: str = "CNY",
    from_ticket: Ticket | None = None,
) -> Opportunity:
    actor.require(OPPORTUNITY_EDIT)
    if not title.strip():
        raise Invalid("请填写商机名称", code="required", field="title")
    customer = Customer.objects.visible_to(actor, "customer.view").filter(pk=customer_id).first()
    if customer is None and from_ticket is None:
        raise Invalid("客户不存在", code="invalid_reference", field="customer_id")
    data = {"stage": stage, "owner_id": owner_id, "region_id": region_id, "currency": currency}
    _check(actor.tenant_id, data)
    opportunity = Opportunity.objects.create(
        tenant_id=actor.tenant_id,
        title=title.strip()[:200],
        customer_id=customer_id,
        stage=stage,
        amount=_amount(amount),
        currency=currency,
        source=source[:50],
        owner_id=owner_id or actor.employee_id,
        region_id=region_id if region_id is not None else getattr(customer, "region_id", None),
        expected_close=expected_close,
        from_ticket=from_ticket,
        created_by_id=actor.employee_id,
    )
    audit_record(
        actor=actor,
        tenant_id=actor.tenant_id,
        action="tickets.opportunity.created",
        subject=opportunity,
        after=snapshot(opportunity),
    )
    return opportunity


def opportunity_create(*, actor: Actor, customer_id: int, title: str, **rest: Any) -> Opportunity:
    with transaction.atomic(durable=True):
        return opportunity_create_within(actor, customer_id=customer_id, title=title, **rest)


def opportunity_get(
    *, actor: Actor, opportunity_id: int, perm: str = OPPORTUNITY_VIEW
) -> Opportunity:
    actor.require(perm)
    found = (
        Opportunity.objects.visible_to(actor, perm)
        .select_related("customer")
        .filter(pk=opportunity_id)
        .first()
    )
    if found is None:
        raise NotFound("商机不存在", field="opportunity_id")
    return found


def opportunity_update(
    *, actor: Actor, opportunity_id: int, changes: Mapping[str, Any]
) -> Opportunity:
    with transaction.atomic(durable=True):
        opportunity = opportunity_get(
            actor=actor, opportunity_id=opportunity_id, perm=OPPORTUNITY_EDIT
        )
        data = {k: v for k, v in changes.items() if k in FIELDS}
        if data.get("title") is not None and not str(data["title"]).strip():
            raise Invalid("请填写商机名称", code="required", field="title")
        _check(actor.tenant_id, {k: v for k, v in data.items() if v is not None})
        before = snapshot(opportunity)
        for key, value in data.items():
            if key == "amount":
                value = _amount(value)
            elif value is None and key in ("title", "stage", "currency"):
                continue
            # A cleared source is blank text; cleared links, amount and date are null.
            setattr(opportunity, key, "" if value is None and key == "source" else value)
        opportunity.save()
        # A new region or owner must not carry the opportunity out of the actor's reach.
        if (
            not Opportunity.objects.visible_to(actor, OPPORTUNITY_EDIT)
            .filter(pk=opportunity.pk)
            .exists()
        ):
            raise Forbidden(
                "修改后的商机不在您的数据范围内",
                code="out_of_scope",
                field="region_id" if "region_id" in data else "owner_id",
            )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.opportunity.updated",
            subject=opportunity,
            before=before,
            after=snapshot(opportunity),
        )
        return opportunity


def opportunities_visible(actor: Actor) -> Any:
    actor.require(OPPORTUNITY_VIEW)
    return Opportunity.objects.visible_to(actor, OPPORTUNITY_VIEW).select_related("customer")
