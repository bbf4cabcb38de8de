"""What every customer service shares: permission codes, reference checks, the write gate (lock a
customer the actor may edit), look-alike keys and the audit snapshot of an identity."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, Forbidden, NotFound
from jingwei.org.scope import Actor

from ..identities import mask_identity
from ..models import Customer, CustomerKind, Identity

VIEW = "customer.view"
EDIT = "customer.edit"
EXPORT = "customer.export"
IMPORT = "customer.import"
ASSIGN = "customer.assign"  # assign, transfer, hand over
MANAGE = "customer.manage"  # tags, rules, segments, pools, scoring

# Profile fields a caller may set, and those that a merge or a later sighting of the same customer
# may fill when they are blank (never overwriting what someone entered).
PROFILE_FIELDS = (
    "kind",
    "name",
    "company_name",
    "region_id",
    "department_id",
    "owner_id",
    "level",
    "source",
    "remark",
)
FILLABLE = ("company_name", "region_id", "department_id", "owner_id", "source", "remark")

# Legal-form words that say nothing about which company it is.
_COMPANY_SUFFIXES = (
    "股份有限公司",
    "有限责任公司",
    "有限公司",
    "集团公司",
    "集团",
    "公司",
    "co.,ltd.",
    "co.,ltd",
    "co.ltd",
    "ltd.",
    "ltd",
    "inc.",
    "inc",
)


def company_key(kind: str, name: str, company_name: str) -> str:
    """The company a customer belongs to (or is), folded so that 「上海 海鸥电器有限公司」 and
    「上海海鸥电器」 compare equal: NFKC, lower case, no spaces or punctuation, no legal form."""
    text = company_name or (name if kind == CustomerKind.COMPANY else "")
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\s()（）【】\[\]·・,，.。\-_/]+", "", text)
    for suffix in _COMPANY_SUFFIXES:
        folded = re.sub(r"[\s.,]+", "", suffix)
        if text.endswith(folded) and len(text) > len(folded):
            text = text[: -len(folded)]
            break
    return text[:200]


def survivor_id(tenant_id: int, customer_id: int) -> int | None:
    """The active customer `customer_id` now lives in (itself unless merged); None if absent.
    Follows the chain: B merged into A, later A into C, reads as C."""
    current = customer_id
    for _ in range(1000):  # a chain is as long as the merges made on it; a cycle cannot form
        row = (
            Customer.objects.filter(tenant_id=tenant_id, pk=current)
            .values_list("pk", "merged_into_id")
            .first()
        )
        if row is None:
            return None
        if row[1] is None:
            return current
        current = row[1]
    return None


def lock_customers(ids: Iterable[int]) -> dict[int, Customer]:
    """Lock customers by id, always in id order (two services locking the same pair cannot
    deadlock). Only the customer rows are locked, not the regions a scope filter would join."""
    wanted = sorted(set(ids))
    return {
        c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
    }


def customer_for_write(actor: Actor, customer_id: int, *, field: str = "customer_id") -> Customer:
    """The active customer `customer_id`, locked, if the actor may edit it (see customer_locked)."""
    actor.require(EDIT)
    return customer_locked(
        actor, customer_id, Customer.objects.visible_to(actor, EDIT), field=field
    )


def customer_locked(
    actor: Actor, customer_id: int, reach: QuerySet[Customer], *, field: str = "customer_id"
) -> Customer:
    """The active customer `customer_id`, locked, if it is in `reach` (a scoped queryset).
    Absent, another tenant's and out of reach answer alike (404); a merged customer's id
    answers 409 naming the customer it was merged into (which is in reach, so nothing leaks)."""
    target = survivor_id(actor.tenant_id, customer_id)
    if target is None or not reach.filter(pk=target).exists():
        raise NotFound("客户不存在", field=field)
    customer = lock_customers([target])[target]
    if customer.merged_into_id is not None:
        raise Conflict("客户刚被合并，请刷新后重试", code="customer_merged", field=field)
    if target != customer_id:
        raise Conflict(
            f"该客户已合并到客户 {target}，请在合并后的客户上操作",
            code="customer_merged",
            field=field,
        )
    return customer


def ensure_still_visible(actor: Actor | None, customer: Customer) -> None:
    """After a write: the actor must still be able to edit what they wrote, else the whole
    operation rolls back (an edit cannot move a customer out of the actor's reach)."""
    if actor is None:
        return
    if not Customer.objects.visible_to(actor, EDIT).filter(pk=customer.pk).exists():
        raise Forbidden(
            "只能在自己的数据范围内登记和修改客户（检查负责人、区域与部门）", code="out_of_scope"
        )


def identity_snapshot(identity: Identity) -> dict[str, Any]:
    """An identity as the audit log keeps it: the value masked whatever the reader may see (the
    full value stays on the identity row, behind customer.view_pii)."""
    return {
        "id": identity.pk,
        "kind": identity.kind,
        "namespace": identity.namespace,
        "value": mask_identity(identity.kind, identity.value),
        "verified": identity.verified,
        "status": identity.status,
    }


def record(
    actor: Actor | None,
    action: str,
    customer: Customer,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    audit_record(
        actor=actor,
        tenant_id=customer.tenant_id,
        action=action,
        subject=customer,
        before=before,
        after=after,
        data=data,
    )
