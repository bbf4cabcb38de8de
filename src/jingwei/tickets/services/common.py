"""What every ticket service shares: permission codes, the read and write gates, the ticket's own
event rows, and the reference resolver the form engine checks picker and file answers with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from jingwei.core.errors import NotFound
from jingwei.org.models import Region, path_ids
from jingwei.org.scope import Actor

from ..models import Attachment, Ticket, TicketEvent

VIEW = "ticket.view"
CREATE = "ticket.create"
HANDLE = "ticket.handle"
ASSIGN = "ticket.assign"
EXPORT = "ticket.export"
MANAGE = "ticket.manage"  # queues, routing rules, mailboxes
TEMPLATES = "ticket.template_manage"
OPPORTUNITY_VIEW = "opportunity.view"
OPPORTUNITY_EDIT = "opportunity.edit"


def ticket_get(actor: Actor, ticket_id: int, *, perm: str = VIEW, lock: bool = False) -> Ticket:
    """A ticket the actor may see (or act on, with `perm`); another tenant's or one out of scope
    reads as missing."""
    actor.require(perm)
    qs = Ticket.objects.visible_to(actor, perm).filter(pk=ticket_id)
    found = (qs.select_for_update(of=("self",)) if lock else qs).first()
    if found is None:
        raise NotFound("工单不存在", field="ticket_id")
    return found


def ticket_event(
    ticket: Ticket,
    kind: str,
    *,
    actor: Actor | None = None,
    data: dict[str, Any] | None = None,
    public: bool = False,
) -> TicketEvent:
    return TicketEvent.objects.create(
        tenant_id=ticket.tenant_id,
        ticket=ticket,
        at=timezone.now(),
        kind=kind,
        actor_id=actor.employee_id if actor else None,
        data=data or {},
        public=public,
    )


def ticket_announce(ticket: Ticket, name: str, *, key: str = "", **extra: Any) -> None:
    """Tell the notification rules (event `ticket.<name>`) in the caller's transaction: a rule
    may text the customer that the ticket was received, or page the on-duty dispatcher for an
    S-level one. The customer's contact is in the payload so a rule can reach them."""
    from django.conf import settings

    from jingwei.notify.services import event_publish

    event_publish(
        tenant_id=ticket.tenant_id,
        name=f"ticket.{name}",
        key=key,
        severity="urgent" if ticket.priority == "S" else "info",
        payload={
            "ticket": {
                "id": ticket.pk,
                "number": ticket.number,
                "title": ticket.title,
                "priority": ticket.priority,
                "status": ticket.status,
                "stage": ticket.stage,
                "source": ticket.source,
                "owner_id": ticket.owner_id,
                "queue_id": ticket.queue_id,
                "url": f"{settings.PUBLIC_BASE_URL.rstrip('/')}/p/{ticket.progress_token}",
            },
            "customer": {
                "id": ticket.customer_id,
                "name": ticket.contact_name,
                "phone": ticket.contact_phone,
                "email": ticket.contact_email,
            },
            "region_id": ticket.region_id,
            "owner_id": ticket.owner_id,
            **extra,
        },
    )


def region_path(tenant_id: int, region_id: Any) -> list[int] | None:
    """The ids from the top region down to `region_id`, or None when the tenant has no such
    region (the form engine's region resolver)."""
    if isinstance(region_id, bool) or not isinstance(region_id, int):
        return None
    path = (
        Region.objects.filter(tenant_id=tenant_id, pk=region_id)
        .values_list("path", flat=True)
        .first()
    )
    if path is None:
        return None
    return path_ids(path)


def make_refs(tenant_id: int, actor: Actor | None) -> Any:
    """The form engine's resolver of picker and file answers: the ids among `ids` that exist in
    the tenant and, for customers, that the actor may see; parts must be active in the parts
    library. Products and projects come with the rest of the catalog module; until then no id of
    theirs exists."""
    from jingwei.catalog.models import Part
    from jingwei.customers.models import Customer

    def refs(kind: str, ids: Iterable[Any]) -> set[Any]:
        wanted = set(ids)
        if kind == "customer":
            qs = (
                Customer.objects.visible_to(actor, "customer.view")
                if actor is not None
                else Customer.objects.filter(tenant_id=tenant_id)
            )
            return set(qs.active().filter(pk__in=wanted).values_list("pk", flat=True))
        if kind == "part":
            return set(
                Part.objects.filter(tenant_id=tenant_id, pk__in=wanted, is_active=True).values_list(
                    "pk", flat=True
                )
            )
        if kind in ("attachment", "photo", "signature"):
            return set(
                Attachment.objects.filter(tenant_id=tenant_id, key__in=wanted).values_list(
                    "key", flat=True
                )
            )
        return set()

    return refs
