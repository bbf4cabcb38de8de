"""Bulk operations over selected tickets: assign, close, export. Assign and close are
all-or-nothing (one transaction; a ticket out of reach or already finished refuses the batch
naming it); export counts against the export guard like every export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from jingwei.audit.services import export_guard
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.core.exports import csv_document
from jingwei.core.pii import present_phone
from jingwei.flows import engine
from jingwei.org.scope import Actor

from ..models import Ticket, TicketStatus
from .common import ASSIGN, EXPORT
from .tickets import _active_colleague, assign_within, close_within

MAX_BULK = 500
COLUMNS = [
    "工单号",
    "标题",
    "模板",
    "来源",
    "优先级",
    "状态",
    "当前步骤",
    "客户",
    "联系人",
    "联系电话",
    "区域",
    "负责人",
    "创建时间",
    "完成/关闭时间",
]


def _locked(actor: Actor, ticket_ids: Sequence[int]) -> list[Ticket]:
    ids = list(dict.fromkeys(ticket_ids))
    if not ids or len(ids) > MAX_BULK:
        raise Invalid(f"请选择 1—{MAX_BULK} 张工单", code="invalid", field="ticket_ids")
    actor.require(ASSIGN)
    found = {
        t.pk: t
        for t in Ticket.objects.visible_to(actor, ASSIGN)
        .select_for_update(of=("self",))
        .filter(pk__in=ids)
        .order_by("pk")
    }
    for index, pk in enumerate(ids):
        if pk not in found:
            # The same answer for another tenant's id as for a missing one: no id echoed.
            raise NotFound("工单不存在或不在您的范围内", field=f"ticket_ids.{index}")
        if found[pk].status != TicketStatus.OPEN:
            raise Conflict(
                f"工单 {found[pk].number} 已结束", code="ticket_closed", field=f"ticket_ids.{index}"
            )
    return [found[pk] for pk in ids]


def tickets_bulk_assign(
    *, actor: Actor, ticket_ids: Sequence[int], owner_id: int, reason: str = ""
) -> list[Ticket]:
    with transaction.atomic(durable=True), engine.recording():
        owner = _active_colleague(actor, owner_id)
        tickets = _locked(actor, ticket_ids)
        for ticket in tickets:
            assign_within(actor, ticket, owner, reason or "批量派单")
        return tickets


def tickets_bulk_close(*, actor: Actor, ticket_ids: Sequence[int], reason: str) -> list[Ticket]:
    if not reason.strip():
        raise Invalid("请填写关闭原因", code="required", field="reason")
    with transaction.atomic(durable=True), engine.recording():
        tickets = _locked(actor, ticket_ids)
        for ticket in tickets:
            close_within(actor, ticket, reason.strip())
        return tickets


def _row(ticket: Ticket, actor: Actor) -> list[Any]:
    local = timezone.localtime
    return [
        ticket.number,
        ticket.title,
        ticket.template.name,
        ticket.get_source_display(),
        ticket.priority,
        ticket.get_status_display(),
        ticket.stage,
        ticket.customer.name if ticket.customer else "",
        ticket.contact_name,
        present_phone(ticket.contact_phone, actor) or "",
        ticket.region.name if ticket.region else "",
        ticket.owner.name if ticket.owner else "",
        local(ticket.created_at).strftime("%Y-%m-%d %H:%M"),
        local(ticket.closed_at).strftime("%Y-%m-%d %H:%M") if ticket.closed_at else "",
    ]


def tickets_export_csv(*, actor: Actor, tickets: Any) -> str:
    """The given tickets (a queryset the caller filtered, or selected ids) as CSV, within what
    the actor may export; phone numbers masked without customer.view_pii."""
    actor.require(EXPORT)
    exportable = Ticket.objects.visible_to(actor, EXPORT).values("pk")
    rows = list(
        tickets.filter(pk__in=exportable).select_related("template", "customer", "region", "owner")
    )
    export_guard(actor=actor, kind="tickets", rows=len(rows))
    return csv_document(COLUMNS, (_row(t, actor) for t in rows))
