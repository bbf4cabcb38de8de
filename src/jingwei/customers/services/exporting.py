"""Customer exports for Excel: the customer list (with its filters) and a segment's members, as
the same columns built by the same code.

An export holds only customers the actor may both view and export (customer.view and
customer.export, each with its data scope); phones and e-mails are masked unless the actor holds
customer.view_pii. Every export is counted by the export guard before anything is built: past
the threshold it is refused and the account frozen (see audit.services.export_guard).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from jingwei.audit.services import export_guard
from jingwei.core.exports import csv_document
from jingwei.org.scope import Actor

from .. import selectors
from ..identities import IdentityKind, present_identity
from ..models import Customer, CustomerTag, Identity, IdentityStatus
from .common import EXPORT
from .segments import segment_members

COLUMNS = [
    "编号",
    "名称",
    "类型",
    "等级",
    "公司名称",
    "区域",
    "负责人",
    "手机号",
    "邮箱",
    "标签",
    "评分",
    "创建时间",
]
LIST_SEPARATOR = "、"


def _with_export_fields(customers: QuerySet[Customer]) -> QuerySet[Customer]:
    """Everything a row shows in a fixed number of queries, whatever the number of customers."""
    contacts = Identity.objects.filter(
        status=IdentityStatus.ACTIVE, kind__in=[IdentityKind.PHONE, IdentityKind.EMAIL]
    ).order_by("id")
    tags = CustomerTag.objects.select_related("tag__group").order_by(
        "tag__group__sort", "tag__group_id", "tag__sort", "tag_id"
    )
    return (
        customers.select_related("region", "owner")
        .prefetch_related(None)  # the list's own prefetches are not what a row needs
        .prefetch_related(
            Prefetch("identities", queryset=contacts, to_attr="export_contacts"),
            Prefetch("tag_links", queryset=tags, to_attr="export_tags"),
        )
    )


def customer_row(customer: Customer, actor: Actor) -> list[Any]:
    """One customer as a row of COLUMNS, masked for `actor`."""
    contacts: list[Identity] = getattr(customer, "export_contacts", [])
    tags: list[CustomerTag] = getattr(customer, "export_tags", [])

    def values(kind: str) -> str:
        return LIST_SEPARATOR.join(
            present_identity(i.kind, i.value, actor) for i in contacts if i.kind == kind
        )

    return [
        customer.pk,
        customer.name,
        customer.get_kind_display(),
        customer.get_level_display(),
        customer.company_name,
        customer.region.name if customer.region else "",
        customer.owner.name if customer.owner else "",
        values(IdentityKind.PHONE),
        values(IdentityKind.EMAIL),
        LIST_SEPARATOR.join(link.tag.name for link in tags),
        customer.score,
        timezone.localtime(customer.created_at).strftime("%Y-%m-%d %H:%M"),
    ]


def _export(actor: Actor, customers: QuerySet[Customer], kind: str) -> str:
    exportable = Customer.objects.visible_to(actor, EXPORT).values("pk")
    rows = list(_with_export_fields(customers.filter(pk__in=exportable)))
    export_guard(actor=actor, kind=kind, rows=len(rows))
    return csv_document(COLUMNS, (customer_row(c, actor) for c in rows))


def customers_export_csv(*, actor: Actor, filters: selectors.CustomerFilters) -> str:
    """The customer list with these filters, as CSV (newest first, like the list)."""
    actor.require(EXPORT)
    return _export(actor, selectors.customer_list(actor, filters), "customers")


def segment_export_csv(*, actor: Actor, segment_id: int) -> str:
    """A segment's members as the actor sees them now, as CSV."""
    actor.require(EXPORT)
    members = segment_members(actor=actor, segment_id=segment_id)
    return _export(actor, members, f"customers.segment:{segment_id}")
