"""Creating tickets (every entry point ends here), and what people do with one afterwards:
edit, assign, comment, watch, close, link to an opportunity.

`ticket_create` is one transaction: the template for the ticket's region, the answers validated
exactly as the console validates them, the customer found or made from the contact's phone and
e-mail, the routing decision, a number, the flow started with its SLA timers, the customer's
timeline and the audit log. A retried entry with the same (source, source_key) gets the ticket
the first made.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, Forbidden, Invalid
from jingwei.customers.identities import IdentityInput, IdentityKind
from jingwei.customers.models import Customer
from jingwei.customers.services.resolution import resolve_in_transaction
from jingwei.customers.services.timeline import event_record
from jingwei.flows import engine
from jingwei.flows.services import case_cancel, case_start, case_tasks_transfer
from jingwei.notify.services import notification_send
from jingwei.org.models import Employee, EmployeeStatus, Region
from jingwei.org.scope import Actor

from ..forms import FormDefinition, check_definition, to_json, validate_answers
from ..models import (
    Attachment,
    Opportunity,
    Priority,
    Source,
    TemplateVersion,
    Ticket,
    TicketComment,
    TicketCounter,
    TicketStatus,
    TicketTemplate,
    TicketWatcher,
    Visibility,
)
from . import routing
from .common import (
    ASSIGN,
    CREATE,
    HANDLE,
    OPPORTUNITY_VIEW,
    VIEW,
    make_refs,
    region_path,
    ticket_announce,
    ticket_event,
    ticket_get,
)
from .templates import template_for

NUMBER_PREFIX = "GD"
CONTACT_KEYS = {"name": "contact_name", "phone": "contact_phone", "email": "contact_email"}
RESERVED_DATA = ("ticket_number", "priority", "source", "category", "assignee", "queue", "form")


@dataclass
class NewTicket:
    """What an entry point knows about a new ticket."""

    template_key: str
    answers: Mapping[str, Any]
    source: str
    source_key: str = ""
    title: str = ""
    customer_id: int | None = None
    region_id: int | None = None
    priority: str = ""
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""
    identities: Sequence[IdentityInput] = ()
    opportunity_id: int | None = None
    project_ref: str = ""
    shop_order_ref: str = ""
    watcher_ids: Sequence[int] = ()
    attachment_keys: Sequence[str] = field(default_factory=list)
    # A mail or a chat message cannot fill a form: the ticket starts with no answers and the
    # 受理 step completes them.
    form_pending: bool = False


@dataclass
class Created:
    ticket: Ticket
    created: bool  # False: the same entry seen again (idempotent), the first ticket returned
    decision: routing.Decision | None = None


_CHECKED: dict[tuple[int, int, datetime], FormDefinition] = {}


def checked_form(version: TemplateVersion) -> FormDefinition:
    """A version's form, checked once per process: versions never change, and checking a
    definition costs more than validating a set of answers."""
    # The creation time in the key: an id alone may be reused (a test database rolled back).
    key = (version.tenant_id, version.pk, version.created_at)
    form = _CHECKED.get(key)
    if form is None:
        if len(_CHECKED) > 2000:
            _CHECKED.clear()
        form = _CHECKED[key] = check_definition(version.form)
    return form


def next_number(tenant_id: int, now: datetime | None = None) -> str:
    """GD + local date + a 4-digit (or longer) sequence of the day, never repeated in a tenant.
    The counter row of the day is locked until the caller's transaction ends."""
    day = timezone.localdate(now or timezone.now())
    prefix = f"{NUMBER_PREFIX}{day:%Y%m%d}"
    counter = (
        TicketCounter.objects.select_for_update().filter(tenant_id=tenant_id, prefix=prefix).first()
    )
    if counter is None:
        try:
            with transaction.atomic():
                counter = TicketCounter.objects.create(tenant_id=tenant_id, prefix=prefix, last=0)
        except IntegrityError:  # another ticket made the day's row first
            counter = TicketCounter.objects.select_for_update().get(
                tenant_id=tenant_id, prefix=prefix
            )
        else:
            counter = TicketCounter.objects.select_for_update().get(pk=counter.pk)
    counter.last += 1
    counter.save(update_fields=["last"])
    return f"{prefix}-{counter.last:04d}"


def _existing(tenant_id: int, source: str, source_key: str) -> Ticket | None:
    if not source_key:
        return None
    return Ticket.objects.filter(tenant_id=tenant_id, source=source, source_key=source_key).first()


def _first_of(form: Mapping[str, Any], answers: Mapping[str, Any], widget: str) -> Any:
    """The answer of the first field of this widget, in display order (a course trial's
    guardian_phone is its contact phone)."""
    ui = form.get("ui", {}) if form else {}
    keys = sorted(
        (k for k, hint in ui.items() if hint.get("widget") == widget and k in answers),
        key=lambda k: (ui[k].get("order", 0), k),
    )
    return answers[keys[0]] if keys else None


def _contact(new: NewTicket, cleaned: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, str]:
    phone = cleaned.get("contact_phone") or _first_of(form, cleaned, "phone")
    email = cleaned.get("contact_email") or _first_of(form, cleaned, "email")
    out = {
        "contact_name": new.contact_name or str(cleaned.get("contact_name") or ""),
        "contact_phone": new.contact_phone or str(phone or ""),
        "contact_email": new.contact_email or str(email or ""),
    }
    return {k: v[:254] for k, v in out.items()}


def _customer(
    tenant_id: int, actor: Actor | None, new: NewTicket, contact: dict[str, str]
) -> Customer | None:
    if new.customer_id is not None:
        qs = (
            Customer.objects.visible_to(actor, "customer.view")
            if actor is not None
            else Customer.objects.filter(tenant_id=tenant_id)
        )
        found = qs.filter(pk=new.customer_id).first()
        if found is None:
            raise Invalid("客户不存在", code="invalid_reference", field="customer_id")
        while found.merged_into_id is not None:  # a merged profile leads to its survivor
            found = Customer.objects.get(pk=found.merged_into_id)
        return found
    identities = list(new.identities)
    if contact["contact_phone"]:
        identities.append(IdentityInput(kind=IdentityKind.PHONE, value=contact["contact_phone"]))
    if contact["contact_email"]:
        identities.append(IdentityInput(kind=IdentityKind.EMAIL, value=contact["contact_email"]))
    if not identities:
        return None
    # The ticket's contact joins the customer these identities belong to, or makes one. The system
    # resolves (not the actor): an agent's ticket links a customer of another owner without
    # giving the agent that customer.
    result = resolve_in_transaction(
        actor=None,
        tenant_id=tenant_id,
        identities=identities,
        profile={"name": contact["contact_name"] or None, "region_id": new.region_id},
        source=f"ticket:{new.source}",
    )
    return result.customer


def _priority(new: NewTicket, cleaned: Mapping[str, Any], rule_priority: str, default: str) -> str:
    if new.priority:
        if new.priority not in Priority.values:
            raise Invalid("优先级应为 S、A、B 或 C", code="invalid", field="priority")
        return new.priority
    urgency = cleaned.get("urgency")
    if isinstance(urgency, str) and urgency in Priority.values:
        return urgency
    return rule_priority or default


def _title(new: NewTicket, template: TicketTemplate, cleaned: Mapping[str, Any]) -> str:
    if new.title:
        return new.title[:200]
    for key in ("title", "subject", "fault", "description", "question"):
        value = cleaned.get(key)
        if isinstance(value, str) and value.strip():
            return f"{template.name}：{value.strip().splitlines()[0]}"[:200]
    return template.name


def ticket_create(*, actor: Actor | None, tenant_id: int | None = None, new: NewTicket) -> Created:
    """Make a ticket. `actor` None: a system entry (public form, mail, WeCom, shop) for
    `tenant_id`. With an actor, it needs ticket.create."""
    if actor is not None:
        actor.require(CREATE)
        tenant_id = actor.tenant_id
    if tenant_id is None:
        raise ValueError("ticket_create needs an actor or a tenant_id")
    with transaction.atomic(durable=True):
        return create_in_transaction(actor=actor, tenant_id=tenant_id, new=new)


def create_in_transaction(*, actor: Actor | None, tenant_id: int, new: NewTicket) -> Created:
    """`ticket_create` inside the caller's transaction (an intake that writes more beside it)."""
    if new.source not in Source.values:
        raise Invalid("不认识的来源", code="invalid", field="source")
    with engine.recording():
        found = _existing(tenant_id, new.source, new.source_key)
        if found is not None:
            return _same_entry(actor, found)
        result = _create(actor, tenant_id, new)
    if result.created:  # the flow's first steps were written as the recording ended
        result.ticket.refresh_from_db(fields=["stage", "status", "closed_at", "updated_at"])
    return result


def _same_entry(actor: Actor | None, found: Ticket) -> Created:
    """The ticket an earlier entry with the same (source, source_key) made. A person who neither
    made it nor may see it learns only that the key is taken, not the ticket's contents."""
    if (
        actor is not None
        and found.created_by_id != actor.employee_id
        and not Ticket.objects.visible_to(actor, VIEW).filter(pk=found.pk).exists()
    ):
        raise Conflict("该来源编号已有工单", code="duplicate_source_key", field="source_key")
    return Created(found, created=False)


def _create(actor: Actor | None, tenant_id: int, new: NewTicket) -> Created:
    if (
        new.region_id is not None
        and not Region.objects.filter(tenant_id=tenant_id, pk=new.region_id).exists()
    ):
        raise Invalid("区域不存在", code="invalid_reference", field="region_id")
    template = template_for(tenant_id=tenant_id, key=new.template_key, region_id=new.region_id)
    version = template.current_version
    assert version is not None
    if new.form_pending:
        if new.answers:
            raise Invalid("待补全表单的工单不带答案", code="invalid", field="answers")
        answers: dict[str, Any] = {}
    else:
        form = checked_form(version)
        cleaned = validate_answers(
            form,
            new.answers,
            refs=make_refs(tenant_id, actor),
            regions=lambda rid: region_path(tenant_id, rid),
        )
        answers = to_json(form, cleaned)
    contact = _contact(new, answers, version.form)
    customer = _customer(tenant_id, actor, new, contact)
    # The ticket's region: as given, else the customer's, else where the form says the service is.
    answered = _first_of(version.form, answers, "region")
    region_id = (
        new.region_id
        or (customer.region_id if customer is not None else None)
        or (answered[-1] if isinstance(answered, list) and answered else None)
    )
    if region_id != new.region_id and region_id is not None:
        # The customer's region may carry its own override of the template.
        regional = template_for(tenant_id=tenant_id, key=new.template_key, region_id=region_id)
        if regional.pk != template.pk:
            return _create(actor, tenant_id, _with_region(new, region_id))
    facts = routing.facts_for(
        tenant_id=tenant_id,
        source=new.source,
        template_key=template.key,
        category=template.category,
        priority=new.priority or str(answers.get("urgency") or "") or version.default_priority,
        region_id=region_id,
        customer=customer,
        answers=answers,
    )
    decision = routing.route(tenant_id, facts)
    priority = _priority(new, answers, decision.priority, version.default_priority)
    if (
        new.opportunity_id is not None
        and not Opportunity.objects.filter(tenant_id=tenant_id, pk=new.opportunity_id).exists()
    ):
        raise Invalid("商机不存在", code="invalid_reference", field="opportunity_id")
    now = timezone.now()
    ticket = Ticket(
        tenant_id=tenant_id,
        number=next_number(tenant_id, now),
        title=_title(new, template, answers),
        template=template,
        template_version=version,
        answers=answers,
        customer=customer,
        source=new.source,
        source_key=new.source_key[:200],
        region_id=region_id,
        priority=priority,
        queue_id=decision.queue_id,
        owner_id=decision.owner_id,
        routing_rule=decision.rule,
        opportunity_id=new.opportunity_id,
        project_ref=new.project_ref[:60],
        shop_order_ref=new.shop_order_ref[:60],
        progress_token=secrets.token_urlsafe(24),
        created_by_id=actor.employee_id if actor else None,
        created_at=now,
        **contact,
    )
    try:
        with transaction.atomic():
            ticket.save()
    except IntegrityError:
        again = _existing(tenant_id, new.source, new.source_key)
        if again is None:
            raise
        return _same_entry(actor, again)
    _attach(ticket, answers, version.form, new.attachment_keys)
    instance = case_start(
        tenant_id=tenant_id,
        key=version.flow_key,
        data={
            **answers,
            "ticket_number": ticket.number,
            "priority": priority,
            "source": new.source,
            "category": template.category,
            "assignee": str(decision.owner_id) if decision.owner_id else "",
            "queue": decision.queue_id or "",
            "form": answers,
        },
        business_key=ticket.number,
        region_id=region_id,
        department_id=None,
        owner_id=decision.owner_id,
        actor_id=actor.employee_id if actor else None,
    )
    ticket.instance = instance
    ticket.save(update_fields=["instance"])
    watchers = set(new.watcher_ids)
    if watchers:
        known = set(
            Employee.objects.filter(tenant_id=tenant_id, pk__in=watchers).values_list(
                "pk", flat=True
            )
        )
        if known != watchers:
            raise Invalid("关注人不存在", code="invalid_reference", field="watcher_ids")
        TicketWatcher.objects.bulk_create(
            TicketWatcher(tenant_id=tenant_id, ticket=ticket, employee_id=e) for e in sorted(known)
        )
    ticket_event(
        ticket,
        "created",
        actor=actor,
        data={"source": new.source, "template_version": version.number},
        public=True,
    )
    ticket_event(
        ticket,
        "routed",
        actor=actor,
        data={
            "rule": decision.rule.name if decision.rule else None,
            "queue": decision.queue_id,
            "owner": decision.owner_id,
            "explanation": decision.explanation,
        },
    )
    if customer is not None:
        event_record(
            tenant_id=tenant_id,
            customer_id=customer.pk,
            kind="ticket",
            title=f"工单 {ticket.number}：{ticket.title}",
            occurred_at=now,
            channel=new.source,
            data={"ticket_id": ticket.pk, "number": ticket.number, "event": "created"},
            event_id=f"ticket:{ticket.pk}:created",
        )
    ticket_announce(ticket, "created", key=f"ticket:{ticket.pk}:created")
    if decision.owner_id:
        notification_send(
            tenant_id=tenant_id,
            recipient_ids=[decision.owner_id],
            kind="ticket.assigned",
            title=f"新工单 {ticket.number}（{priority} 级）",
            body=ticket.title,
            data={"ticket_id": ticket.pk},
        )
    audit_record(
        actor=actor,
        tenant_id=tenant_id,
        action="tickets.ticket.created",
        subject=ticket,
        after={
            "number": ticket.number,
            "template": template.key,
            "version": version.number,
            "source": new.source,
            "priority": priority,
            "queue": decision.queue_id,
            "owner": decision.owner_id,
        },
    )
    return Created(ticket, created=True, decision=decision)


def _with_region(new: NewTicket, region_id: int) -> NewTicket:
    return replace(new, region_id=region_id)


def _attach(
    ticket: Ticket, answers: Mapping[str, Any], form: Mapping[str, Any], extra: Sequence[str]
) -> None:
    """Files named in the answers (photos, signature…) and sent beside them become the ticket's."""
    keys = set(extra)
    for key, value in answers.items():
        widget = form.get("ui", {}).get(key, {}).get("widget")
        if widget in ("attachment", "photo", "signature"):
            keys.update(value if isinstance(value, list) else [value])
    if not keys:
        return
    claimed = Attachment.objects.filter(
        tenant_id=ticket.tenant_id, key__in=keys, ticket__isnull=True
    ).update(ticket=ticket)
    if claimed != len(keys):
        raise Invalid(
            "附件不存在或已属于其他工单", code="invalid_reference", field="attachment_keys"
        )


# --- after creation --------------------------------------------------------------------------

EDITABLE = ("title", "priority", "customer_id", "opportunity_id", "project_ref", "shop_order_ref")


def ticket_update(*, actor: Actor, ticket_id: int, changes: Mapping[str, Any]) -> Ticket:
    """Change a ticket's title, priority or links. A priority change reaches the flow's data (its
    conditions and the next SLA read it)."""
    with transaction.atomic(durable=True), engine.recording():
        ticket = ticket_get(actor, ticket_id, perm=HANDLE, lock=True)
        before = {k: getattr(ticket, k) for k in EDITABLE}
        if changes.get("priority") is not None and changes["priority"] not in Priority.values:
            raise Invalid("优先级应为 S、A、B 或 C", code="invalid", field="priority")
        if changes.get("customer_id") is not None and (
            not Customer.objects.visible_to(actor, "customer.view")
            .filter(pk=changes["customer_id"])
            .exists()
        ):
            raise Invalid("客户不存在", code="invalid_reference", field="customer_id")
        if changes.get("opportunity_id") is not None and (
            not Opportunity.objects.visible_to(actor, OPPORTUNITY_VIEW)
            .filter(pk=changes["opportunity_id"])
            .exists()
        ):
            raise Invalid("商机不存在", code="invalid_reference", field="opportunity_id")
        for key in EDITABLE:
            if key in changes:
                setattr(ticket, key, changes[key] if changes[key] is not None else _blank(key))
        ticket.save()
        after = {k: getattr(ticket, k) for k in EDITABLE}
        diff = {k: [before[k], after[k]] for k in EDITABLE if before[k] != after[k]}
        if "priority" in diff and ticket.instance_id is not None:
            instance = engine.lock_instance(pk=ticket.instance_id)
            if instance is not None:
                engine.update_data(instance, {"priority": ticket.priority})
        if diff:
            ticket_event(ticket, "updated", actor=actor, data={"changes": diff})
            audit_record(
                actor=actor,
                tenant_id=actor.tenant_id,
                action="tickets.ticket.updated",
                subject=ticket,
                before={k: v[0] for k, v in diff.items()},
                after={k: v[1] for k, v in diff.items()},
            )
        return ticket


def _blank(key: str) -> Any:
    return None if key.endswith("_id") else ""


def _active_colleague(actor: Actor, employee_id: int) -> int:
    if not Employee.objects.filter(
        tenant_id=actor.tenant_id, pk=employee_id, status=EmployeeStatus.ACTIVE
    ).exists():
        raise Invalid("负责人不存在或已离职", code="invalid_reference", field="owner_id")
    return employee_id


def assign_within(actor: Actor, ticket: Ticket, owner_id: int, reason: str) -> None:
    """Make `owner_id` the ticket's owner and give them its open steps (in the caller's
    transaction; the caller has locked the ticket and checked the actor may assign it)."""
    previous = ticket.owner_id
    ticket.owner_id = owner_id
    ticket.save(update_fields=["owner", "updated_at"])
    moved = 0
    if ticket.instance_id is not None:
        moved = case_tasks_transfer(
            instance_id=ticket.instance_id, assignee_id=owner_id, actor=actor, reason=reason
        )
    ticket_event(
        ticket,
        "assigned",
        actor=actor,
        data={"from": previous, "to": owner_id, "reason": reason, "tasks": moved},
    )
    ticket_announce(ticket, "assigned", previous_owner_id=previous, reason=reason)
    notification_send(
        tenant_id=ticket.tenant_id,
        recipient_ids=[owner_id],
        kind="ticket.assigned",
        title=f"工单 {ticket.number} 已派给您",
        body=reason or ticket.title,
        data={"ticket_id": ticket.pk},
    )
    audit_record(
        actor=actor,
        tenant_id=ticket.tenant_id,
        action="tickets.ticket.assigned",
        subject=ticket,
        before={"owner": previous},
        after={"owner": owner_id},
        data={"reason": reason},
    )


def ticket_assign(*, actor: Actor, ticket_id: int, owner_id: int, reason: str = "") -> Ticket:
    """派单 / 改派: a new owner, who also gets the ticket's open steps."""
    with transaction.atomic(durable=True):
        ticket = ticket_get(actor, ticket_id, perm=ASSIGN, lock=True)
        if ticket.status != TicketStatus.OPEN:
            raise Conflict("工单已结束，不能再派单", code="ticket_closed")
        assign_within(actor, ticket, _active_colleague(actor, owner_id), reason)
        return ticket


def close_within(actor: Actor, ticket: Ticket, reason: str) -> None:
    case_cancelled = False
    if ticket.instance_id is not None:
        case_cancelled = case_cancel(
            instance_id=ticket.instance_id, actor=actor, reason=f"工单关闭：{reason}"
        )
    ticket.status = TicketStatus.CLOSED
    ticket.stage = "已关闭"
    ticket.closed_at = timezone.now()
    ticket.save(update_fields=["status", "stage", "closed_at", "updated_at"])
    ticket_event(ticket, "closed", actor=actor, data={"reason": reason}, public=True)
    ticket_announce(ticket, "closed", key=f"ticket:{ticket.pk}:closed", reason=reason)
    audit_record(
        actor=actor,
        tenant_id=ticket.tenant_id,
        action="tickets.ticket.closed",
        subject=ticket,
        data={"reason": reason, "flow_cancelled": case_cancelled},
    )


def ticket_close(*, actor: Actor, ticket_id: int, reason: str) -> Ticket:
    """Close an open ticket (duplicate, withdrawn…): its flow stops with its tasks and timers."""
    if not reason.strip():
        raise Invalid("请填写关闭原因", code="required", field="reason")
    with transaction.atomic(durable=True), engine.recording():
        ticket = ticket_get(actor, ticket_id, perm=ASSIGN, lock=True)
        if ticket.status != TicketStatus.OPEN:
            raise Conflict("工单已结束", code="ticket_closed")
        close_within(actor, ticket, reason.strip())
        return ticket


def comment_add(
    *,
    actor: Actor | None,
    ticket: Ticket | None = None,
    ticket_id: int | None = None,
    body: str,
    visibility: str = Visibility.INTERNAL,
    via: str = Source.CONSOLE,
    author_name: str = "",
    message_id: str = "",
) -> TicketComment:
    """A comment: internal (staff only) or customer-visible (shown on the progress page and sent
    in replies). `actor` None: the customer's own words arriving by mail or WeCom."""
    if not body.strip():
        raise Invalid("请填写内容", code="required", field="body")
    if visibility not in Visibility.values:
        raise Invalid("可见范围应为 internal 或 public", code="invalid", field="visibility")
    with transaction.atomic(durable=True):
        if ticket is None:
            assert actor is not None and ticket_id is not None
            ticket = ticket_get(actor, ticket_id, perm=HANDLE)
        return comment_within(
            actor,
            ticket,
            body=body,
            visibility=visibility,
            via=via,
            author_name=author_name,
            message_id=message_id,
        )


def comment_within(
    actor: Actor | None,
    ticket: Ticket,
    *,
    body: str,
    visibility: str,
    via: str,
    author_name: str = "",
    message_id: str = "",
) -> TicketComment:
    """`comment_add` in the caller's transaction, for a ticket already in hand."""
    if message_id:
        seen = TicketComment.objects.filter(
            tenant_id=ticket.tenant_id, message_id=message_id
        ).first()
        if seen is not None:
            return seen
    comment = TicketComment.objects.create(
        tenant_id=ticket.tenant_id,
        ticket=ticket,
        author_id=actor.employee_id if actor else None,
        author_name=author_name or (actor.name if actor else "客户"),
        body=body.strip()[:20000],
        visibility=visibility,
        via=via,
        message_id=message_id[:300],
        created_at=timezone.now(),
    )
    ticket_event(
        ticket,
        "commented",
        actor=actor,
        data={"comment_id": comment.pk, "visibility": visibility, "via": via},
        public=visibility == Visibility.PUBLIC,
    )
    people = set(TicketWatcher.objects.filter(ticket=ticket).values_list("employee_id", flat=True))
    if ticket.owner_id:
        people.add(ticket.owner_id)
    people.discard(actor.employee_id if actor else None)
    if people:
        notification_send(
            tenant_id=ticket.tenant_id,
            recipient_ids=people,
            kind="ticket.commented",
            title=f"工单 {ticket.number} 有新{'客户回复' if actor is None else '评论'}",
            body=comment.body[:200],
            data={"ticket_id": ticket.pk, "comment_id": comment.pk},
        )
    return comment


def watcher_set(*, actor: Actor, ticket_id: int, employee_id: int, watching: bool) -> Ticket:
    with transaction.atomic(durable=True):
        ticket = ticket_get(actor, ticket_id, perm=VIEW)
        if employee_id != actor.employee_id:
            actor.require(ASSIGN)
        if not Employee.objects.filter(tenant_id=actor.tenant_id, pk=employee_id).exists():
            raise Invalid("员工不存在", code="invalid_reference", field="employee_id")
        if watching:
            TicketWatcher.objects.get_or_create(
                tenant_id=actor.tenant_id, ticket=ticket, employee_id=employee_id
            )
        else:
            TicketWatcher.objects.filter(ticket=ticket, employee_id=employee_id).delete()
        return ticket


def ticket_opportunity_create(
    *,
    actor: Actor,
    ticket_id: int,
    title: str = "",
    amount: Any = None,
    stage: str = "lead",
    expected_close: Any = None,
) -> Opportunity:
    """A sale found while serving a ticket: a new opportunity for the ticket's customer, linked
    both ways."""
    from .opportunities import opportunity_create_within

    with transaction.atomic(durable=True):
        ticket = ticket_get(actor, ticket_id, perm=HANDLE, lock=True)
        if ticket.customer_id is None:
            raise Conflict("工单没有关联客户，无法创建商机", code="no_customer", field="ticket_id")
        if ticket.opportunity_id is not None:
            raise Conflict("工单已关联商机", code="already_linked", field="ticket_id")
        opportunity = opportunity_create_within(
            actor,
            customer_id=ticket.customer_id,
            title=title or f"{ticket.title}（来自工单 {ticket.number}）",
            amount=amount,
            stage=stage,
            source=f"工单 {ticket.number}",
            expected_close=expected_close,
            region_id=ticket.region_id,
            from_ticket=ticket,
        )
        ticket.opportunity = opportunity
        ticket.save(update_fields=["opportunity", "updated_at"])
        ticket_event(ticket, "opportunity_created", actor=actor, data={"id": opportunity.pk})
        return opportunity


def tickets_visible(actor: Actor, perm: str = VIEW) -> Any:
    actor.require(perm)
    return Ticket.objects.visible_to(actor, perm)


def ensure_may_see(actor: Actor, ticket: Ticket) -> None:
    if not Ticket.objects.visible_to(actor, VIEW).filter(pk=ticket.pk).exists():
        raise Forbidden("工单不在您的数据范围内", code="out_of_scope")
