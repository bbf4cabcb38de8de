"""Reading tickets: the filtered list and a ticket's timeline (its own events, the flow's
events and the comments, oldest first)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from jingwei.flows.models import FlowEvent
from jingwei.org.scope import Actor

from .models import Ticket, TicketComment, TicketEvent
from .services.common import VIEW


@dataclass
class TicketFilters:
    q: str | None = None
    status: str | None = None
    priority: str | None = None
    source: str | None = None
    template: str | None = None
    queue_id: int | None = None
    owner_id: int | None = None
    region_id: int | None = None
    customer_id: int | None = None
    opportunity_id: int | None = None
    mine: bool = False
    created_after: datetime | None = None
    created_before: datetime | None = None


def ticket_list(actor: Actor, filters: TicketFilters, perm: str = VIEW) -> QuerySet[Ticket]:
    actor.require(perm)
    qs = Ticket.objects.visible_to(actor, perm).select_related(
        "template", "customer", "region", "owner", "queue"
    )
    f = filters
    if f.q:
        qs = qs.filter(Q(number__icontains=f.q) | Q(title__icontains=f.q))
    for name in ("status", "priority", "source"):
        if getattr(f, name):
            qs = qs.filter(**{name: getattr(f, name)})
    if f.template:
        qs = qs.filter(template__key=f.template)
    for name in ("queue_id", "owner_id", "customer_id", "opportunity_id"):
        if getattr(f, name) is not None:
            qs = qs.filter(**{name: getattr(f, name)})
    if f.region_id is not None:
        qs = qs.filter(Q(region_id=f.region_id) | Q(region__path__contains=f"/{f.region_id}/"))
    if f.mine:
        qs = qs.filter(owner_id=actor.employee_id)
    if f.created_after:
        qs = qs.filter(created_at__gte=f.created_after)
    if f.created_before:
        qs = qs.filter(created_at__lt=f.created_before)
    return qs


def ticket_timeline(ticket: Ticket) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for e in TicketEvent.objects.filter(ticket=ticket).select_related("actor"):
        items.append(
            {
                "at": e.at,
                "kind": f"ticket.{e.kind}",
                "actor": e.actor.name if e.actor else None,
                "node_id": "",
                "data": e.data,
            }
        )
    if ticket.instance_id is not None:
        for fe in FlowEvent.objects.filter(instance_id=ticket.instance_id).select_related(
            "actor", "task"
        ):
            items.append(
                {
                    "at": fe.at,
                    "kind": f"flow.{fe.kind}",
                    "actor": fe.actor.name if fe.actor else None,
                    "node_id": fe.node_id,
                    "data": {**fe.data, **({"task": fe.task.name} if fe.task else {})},
                }
            )
    for c in TicketComment.objects.filter(ticket=ticket).select_related("author"):
        items.append(
            {
                "at": c.created_at,
                "kind": f"comment.{c.visibility}",
                "actor": c.author.name if c.author else c.author_name,
                "node_id": "",
                "data": {"body": c.body, "via": c.via, "comment_id": c.pk},
            }
        )
    items.sort(key=lambda i: i["at"])
    return items
