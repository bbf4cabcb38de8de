"""Reads of customers, identities, merge candidates and merge records. Every read starts from
`Customer.objects.visible_to(actor, "customer.view")`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Prefetch, Q, QuerySet

from jingwei.core.errors import NotFound
from jingwei.org.models import Department, Region
from jingwei.org.scope import Actor

from .identities import IdentityKind
from .models import (
    CandidateStatus,
    Customer,
    CustomerQuerySet,
    Identity,
    IdentityStatus,
    MergeCandidate,
    MergeRecord,
)
from .services.common import VIEW, survivor_id

PHONE_SEARCH_MIN_DIGITS = 4


def visible_customers(actor: Actor) -> CustomerQuerySet:
    actor.require(VIEW)
    return Customer.objects.visible_to(actor, VIEW)


def _with_phones(qs: QuerySet[Customer]) -> QuerySet[Customer]:
    """Each customer's active phones as `active_phones` (oldest first: the main number)."""
    phones = Identity.objects.filter(kind=IdentityKind.PHONE, status=IdentityStatus.ACTIVE)
    return qs.prefetch_related(
        Prefetch("identities", queryset=phones.order_by("id"), to_attr="active_phones"),
        "collaborations",
    )


@dataclass(frozen=True)
class CustomerFilters:
    q: str | None = None
    region_id: int | None = None
    department_id: int | None = None
    owner_id: int | None = None
    level: str | None = None
    kind: str | None = None
    source: str | None = None


def customer_list(actor: Actor, filters: CustomerFilters) -> QuerySet[Customer]:
    """Active customers the actor may see, newest first. `q` finds names and company names
    containing it, and (with at least four digits) phones containing its digits."""
    qs = visible_customers(actor).active()
    if filters.q:
        match = Q(name__icontains=filters.q) | Q(company_name__icontains=filters.q)
        digits = re.sub(r"\D", "", filters.q)
        if len(digits) >= PHONE_SEARCH_MIN_DIGITS and re.fullmatch(r"[\d\s()+.-]+", filters.q):
            phones = Identity.objects.filter(
                tenant_id=actor.tenant_id,
                kind=IdentityKind.PHONE,
                status=IdentityStatus.ACTIVE,
                value__contains=digits.removeprefix("86") if len(digits) == 13 else digits,
            ).values("customer_id")
            match |= Q(pk__in=phones)
        qs = qs.filter(match)
    for field, model in (("region", Region), ("department", Department)):
        node_id = getattr(filters, f"{field}_id")
        if node_id is not None:
            node = model.objects.filter(tenant_id=actor.tenant_id, pk=node_id).first()
            qs = qs.filter(**{f"{field}__path__startswith": node.path}) if node else qs.none()
    if filters.owner_id is not None:
        qs = qs.filter(owner_id=filters.owner_id)
    for name in ("level", "kind", "source"):
        value = getattr(filters, name)
        if value:
            qs = qs.filter(**{name: value})
    return _with_phones(qs)


def customer_read(actor: Actor, customer_id: int) -> Customer:
    """The customer `customer_id` as the actor may read it. A merged customer's id reads as the
    customer it was merged into (with `redirected_from` set); absent, another tenant's and out of
    scope answer alike (404)."""
    target = survivor_id(actor.tenant_id, customer_id)
    customer = (
        _with_phones(visible_customers(actor)).filter(pk=target).first()
        if target is not None
        else None
    )
    if customer is None:
        raise NotFound("客户不存在", field="customer_id")
    customer.redirected_from = customer_id if customer_id != target else None  # type: ignore[attr-defined]
    return customer


def identities_of(customer: Customer) -> QuerySet[Identity]:
    """Active identities first, then removed ones (history), oldest first within each."""
    return customer.identities.order_by("status", "id")


def merged_from(customer: Customer) -> list[int]:
    return list(customer.merged_customers.order_by("id").values_list("pk", flat=True))


def candidate_list(
    actor: Actor, *, status: str | None, customer_id: int | None
) -> QuerySet[MergeCandidate]:
    """Candidates whose two customers the actor may both see; open ones only while both are still
    active (a merge made another way settles them)."""
    visible = visible_customers(actor).values("pk")
    qs = MergeCandidate.objects.filter(
        tenant_id=actor.tenant_id, customer__in=visible, other__in=visible
    )
    if status:
        qs = qs.filter(status=status)
        if status == CandidateStatus.PROPOSED:
            qs = qs.filter(customer__merged_into__isnull=True, other__merged_into__isnull=True)
    if customer_id is not None:
        qs = qs.filter(Q(customer_id=customer_id) | Q(other_id=customer_id))
    phones = Identity.objects.filter(
        kind=IdentityKind.PHONE, status=IdentityStatus.ACTIVE
    ).order_by("id")
    return qs.select_related("customer", "other").prefetch_related(
        Prefetch("customer__identities", queryset=phones, to_attr="active_phones"),
        Prefetch("other__identities", queryset=phones, to_attr="active_phones"),
    )


def merges_of(actor: Actor, customer_id: int) -> QuerySet[MergeRecord]:
    """Merges into and out of a customer, newest first (the order to undo them in)."""
    customer = customer_read(actor, customer_id)
    return MergeRecord.objects.filter(tenant_id=actor.tenant_id).filter(
        Q(target=customer) | Q(source=customer)
    )
