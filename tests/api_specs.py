"""The table of every API endpoint, and how to exercise it.

One row per operation (method + path template). A row says:

- `target`: builds, in a given tenant, an object the operation can act on *successfully* (a leaf
  department for DELETE, a frozen employee for unfreeze, …) and returns the path parameters naming
  it. Built in the caller's own tenant it proves the call works; built in another tenant it must
  answer exactly like a missing id.
- `body`: a valid request body for the caller's side (it may build what it refers to).
- `body_refs`: body fields that name other objects, with a builder of such an object in a given
  tenant: another tenant's id there must be refused exactly like a missing one. The builder gives
  the field's whole value: an id, a list of ids, or an object holding ids (a routing rule's
  assignment); the missing twin has every id in it replaced.
- `rows`: for a read, exactly the rows the side's admin must get back; `shows`: fields a
  single-object read must carry; `query_refs`: filters that point at objects (another tenant's
  object must answer exactly like a missing one).

Path parameters are ids (a missing id is 987654321), text keys (a file's key: a missing key is
"no-such-key") or choices such as a file format (`fmt`, kept as built). A `public` row with a path
names a link token anyone may use: there an unknown token must answer 404. `status` picks the
valid call's success status where the operation documents several.

tests/test_api_contract.py fails when an operation registered on the API has no row here, and
derives the bad-input cases (wrong types, missing and unknown fields, bad query parameters) from
the OpenAPI document, so a new endpoint is covered by adding its row.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import QuerySet
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.audit.services import audit_record
from jingwei.customers import services as customers
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import (
    Customer,
    CustomerPool,
    CustomerTag,
    FollowUp,
    Handover,
    ImportJob,
    MergeCandidate,
    MergeRecord,
    ScoreSignal,
    Segment,
    Tag,
    TagGroup,
    TagRule,
)
from jingwei.customers.services.events import EventInput
from jingwei.customers.services.ownership import local_day, time_zone_of
from jingwei.flows import calendars as flow_calendars
from jingwei.flows import services as flows
from jingwei.flows.demo import shipped_xml as shipped_flow_xml
from jingwei.flows.models import Instance as FlowInstance
from jingwei.flows.models import ProcessDefinition, ProcessVersion, TaskCandidate, WorkCalendar
from jingwei.flows.models import Task as FlowTask
from jingwei.notify.models import (
    Delivery,
    DeliveryStatus,
    MessageTemplate,
    Notification,
    Roster,
    Shift,
)
from jingwei.notify.models import Event as NotifyEvent
from jingwei.notify.models import Rule as NotifyRule
from jingwei.org.auth import token_issue
from jingwei.org.models import (
    ApiToken,
    Department,
    Employee,
    Region,
    Role,
    RoleAssignment,
    Tenant,
)
from jingwei.org.scope import actor_for
from jingwei.tickets import services as tickets
from jingwei.tickets.forms import builtin_form
from jingwei.tickets.models import (
    Attachment,
    Mailbox,
    Opportunity,
    Queue,
    RoutingRule,
    Ticket,
    TicketTemplate,
)

from .factories import FAST_PASSWORD, EmployeeFactory, make_department, make_region, make_role

if TYPE_CHECKING:
    from .conftest import Org

_seq = itertools.count(1)


@dataclass(frozen=True)
class Side:
    """One tenant as the tests see it: its org, its all-permission admin, and the label written into
    the names of every row built for it (so a leak of the other side's rows is visible as text)."""

    org: Org
    admin: Employee
    label: str  # "甲方" (the caller) / "乙方" (the other tenant)
    slug: str  # ASCII twin of the label, for user names

    @property
    def tenant(self) -> Tenant:
        return self.org.tenant

    def name(self, what: str) -> str:
        return f"{self.label}{what}{next(_seq)}"


# --- builders: one fresh object of each kind, in the side's tenant ---------------------------


def new_department(s: Side) -> Department:
    return make_department(s.tenant, s.name("部门"), s.org.hq)


def new_region(s: Side) -> Region:
    return make_region(s.tenant, s.name("区域"), s.org.east)


def new_employee(s: Side, **extra: Any) -> Employee:
    n = next(_seq)
    return EmployeeFactory(
        tenant=s.tenant,
        name=f"{s.label}员工{n}",
        user__username=f"{s.slug}-{n}",
        department=s.org.east_dept,
        region=s.org.shanghai,
        **extra,
    )


def new_frozen_employee(s: Side) -> Employee:
    return new_employee(s, frozen_at=timezone.now(), frozen_reason=f"{s.label}导出异常")


def new_role(s: Side) -> Role:
    return make_role(s.tenant, s.name("角色"), ["org.view"])


def new_assignment(s: Side) -> RoleAssignment:
    return RoleAssignment.objects.create(
        tenant=s.tenant,
        employee=new_employee(s),
        role=new_role(s),
        scope="self",
        reason=s.name("授权"),
    )


def new_token(s: Side) -> ApiToken:
    return token_issue(actor=actor_for(s.admin), name=s.name("令牌")).token


def new_notification(s: Side) -> Notification:
    return Notification.objects.create(
        tenant=s.tenant, recipient=s.admin, kind="test.contract", title=s.name("通知")
    )


def new_event(s: Side) -> AuditEvent:
    return audit_record(
        actor=actor_for(s.admin),
        tenant_id=s.tenant.pk,
        action="test.contract",
        subject=new_department(s),
        data={"label": s.label},
    )


def new_message_template(s: Side) -> MessageTemplate:
    n = next(_seq)
    return MessageTemplate.objects.create(
        tenant=s.tenant, key=f"{s.slug}-t{n}", name=s.name("模板"), title=s.name("标题")
    )


def new_notify_rule(s: Side) -> NotifyRule:
    return NotifyRule.objects.create(
        tenant=s.tenant,
        name=s.name("通知规则"),
        event="ticket.created",
        recipients=[{"kind": "employee", "employee_id": s.admin.pk}],
        channels={"info": ["inapp"]},
        template=new_message_template(s),
    )


def new_roster(s: Side) -> Roster:
    return Roster.objects.create(tenant=s.tenant, name=s.name("值班表"), region=s.org.east)


def new_shift(s: Side) -> dict[str, int]:
    roster = new_roster(s)
    start = timezone.now()
    shift = Shift.objects.create(
        tenant=s.tenant,
        roster=roster,
        employee=s.admin,
        starts_at=start,
        ends_at=start + timedelta(hours=8),
    )
    return {"roster_id": roster.pk, "shift_id": shift.pk}


def new_dead_delivery(s: Side) -> Delivery:
    event = NotifyEvent.objects.create(
        tenant=s.tenant, name="ticket.created", key=f"{s.slug}-e{next(_seq)}"
    )
    return Delivery.objects.create(
        tenant=s.tenant,
        event=event,
        recipient=f"employee:{s.admin.pk}",
        recipient_name=s.admin.name,
        employee=s.admin,
        channel="inapp",
        address=str(s.admin.pk),
        title=s.name("消息"),
        status=DeliveryStatus.DEAD,
        not_before=timezone.now(),
        attempts=5,
        last_error="网关繁忙",
    )


def notify_template_body(s: Side) -> dict[str, Any]:
    return {
        "key": f"{s.slug}-new-{next(_seq)}",
        "name": s.name("模板"),
        "title": "工单 {{ ticket.number }}",
        "text": "{{ ticket.title }}",
    }


def notify_rule_body(s: Side) -> dict[str, Any]:
    return {
        "name": s.name("规则"),
        "event": "ticket.created",
        "condition": 'ticket.priority == "S"',
        "recipients": [{"kind": "employee", "employee_id": new_employee(s).pk}],
        "channels": {"urgent": ["inapp"]},
        "template_id": new_message_template(s).pk,
    }


_NOTIFY_RULE_REFS: dict[str, Callable[[Side], Any]] = {
    "template_id": lambda s: new_message_template(s).pk,
    "recipients": lambda s: [{"kind": "employee", "employee_id": new_employee(s).pk}],
}


def shifts_body(s: Side) -> dict[str, Any]:
    return {
        "shifts": [
            {
                "employee_id": new_employee(s).pk,
                "starts_at": "2026-11-24T08:00:00+08:00",
                "ends_at": "2026-11-24T20:00:00+08:00",
            }
        ]
    }


FLOW_FIXTURES = Path(__file__).parent / "flows" / "fixtures"


def new_definition(s: Side, fixture: str = "simple_linear.bpmn") -> ProcessDefinition:
    """A definition with a valid draft and one published version, keyed uniquely."""
    actor = actor_for(s.admin)
    key = f"{s.slug}-flow-{next(_seq)}"
    flows.definition_save(
        actor=actor, key=key, name=s.name("流程"), xml=(FLOW_FIXTURES / fixture).read_text()
    )
    flows.definition_publish(actor=actor, key=key)
    return ProcessDefinition.objects.get(tenant=s.tenant, key=key)


def new_twice_published(s: Side) -> ProcessDefinition:
    definition = new_definition(s)
    flows.definition_publish(actor=actor_for(s.admin), key=definition.key)
    return definition


def new_version(s: Side) -> ProcessVersion:
    return new_definition(s).versions.get()


def new_instance(s: Side, fixture: str = "simple_linear.bpmn") -> FlowInstance:
    definition = new_definition(s, fixture)
    return flows.instance_start(
        actor=actor_for(s.admin), key=definition.key, business_key=s.name("案件")
    )


def new_waiting_instance(s: Side) -> FlowInstance:
    return new_instance(s, "wait_for_payment.bpmn")


def new_task(s: Side, **changes: Any) -> FlowTask:
    """The open 处理 task of a fresh instance (a shared pool: nobody holds 客服 here)."""
    task = FlowTask.objects.get(instance=new_instance(s), status="open")
    if changes:
        FlowTask.objects.filter(pk=task.pk).update(**changes)
        task.refresh_from_db()
    return task


def new_claimable_task(s: Side) -> FlowTask:
    task = new_task(s)
    TaskCandidate.objects.create(tenant=s.tenant, task=task, employee=s.admin)
    return task


def new_own_task(s: Side) -> FlowTask:
    return new_task(s, assignee_id=s.admin.pk)


CALENDAR_HOURS = {"mon": [["08:00", "20:00"]], "sat": [["09:00", "12:00"]]}


def new_calendar(s: Side) -> WorkCalendar:
    """A fresh region's own business calendar."""
    return flow_calendars.calendar_put(
        actor=actor_for(s.admin),
        name=s.name("日历"),
        region_id=new_region(s).pk,
        spec={"hours": CALENDAR_HOURS, "holidays": ["2026-12-31"]},
    )


def new_phone() -> str:
    return f"139{next(_seq):08d}"


def new_customer(s: Side, name: str | None = None, phone: str | None = None) -> Customer:
    """A customer of 上海 / 华东服务部 owned by the side's admin, with a phone and an e-mail."""
    return customers.customer_resolve(
        actor=actor_for(s.admin),
        identities=[
            IdentityInput("phone", phone or new_phone()),
            IdentityInput("email", f"{s.slug}.{next(_seq)}@example.cn"),
        ],
        profile={
            "name": name or s.name("客户"),
            "company_name": s.name("公司"),
            "region_id": s.org.shanghai.pk,
            "department_id": s.org.east_dept.pk,
        },
    ).customer


def new_candidate(s: Side) -> MergeCandidate:
    """Two namesakes whose phones differ in the last digit: proposed for merging."""
    n = next(_seq)
    name = s.name("疑似")
    first = new_customer(s, name, f"137{n:07d}1")
    second = new_customer(s, name, f"137{n:07d}2")
    return MergeCandidate.objects.get(tenant=s.tenant, customer=first, other=second)


def new_merge(s: Side) -> MergeRecord:
    target, source = new_customer(s), new_customer(s)
    return customers.customer_merge(
        actor=actor_for(s.admin), target_id=target.pk, source_id=source.pk, reason="重复登记"
    )


def new_customer_identity(s: Side) -> dict[str, int]:
    customer = new_customer(s)
    return {"customer_id": customer.pk, "identity_id": customer.identities.first().pk}


def new_pool(s: Side) -> CustomerPool:
    """The pool of a fresh region under 华东 (a region has one pool at most)."""
    return customers.pool_create(
        actor=actor_for(s.admin), region_id=new_region(s).pk, name=s.name("公海")
    )


def new_pool_customer(s: Side) -> Customer:
    """An unclaimed customer of a fresh pool (registered by a channel: nobody owns it)."""
    return customers.customer_resolve(
        actor=None,
        tenant_id=s.tenant.pk,
        identities=[IdentityInput("phone", new_phone())],
        profile={"name": s.name("公海客户"), "region_id": new_pool(s).region_id},
    ).customer


def new_pool_with_customer(s: Side) -> CustomerPool:
    return CustomerPool.objects.get(tenant=s.tenant, region_id=new_pool_customer(s).region_id)


def new_owned_pool_customer(s: Side) -> Customer:
    """A customer of a fresh pool's region, owned by the side's admin."""
    return customers.customer_resolve(
        actor=actor_for(s.admin),
        identities=[IdentityInput("phone", new_phone())],
        profile={"name": s.name("私海客户"), "region_id": new_pool(s).region_id},
    ).customer


def new_follow_up(s: Side) -> FollowUp:
    """A follow-up of the admin's, the next one due a minute from now."""
    return customers.follow_up_record(
        actor=actor_for(s.admin),
        customer_id=new_customer(s).pk,
        kind="call",
        content=s.name("电话跟进"),
        next_at=timezone.now() + timedelta(minutes=1),
    )


def new_employee_with_customer(s: Side) -> Employee:
    employee = new_employee(s)
    customers.customer_resolve(
        actor=actor_for(s.admin),
        identities=[IdentityInput("phone", new_phone())],
        profile={
            "name": s.name("交接客户"),
            "region_id": s.org.shanghai.pk,
            "owner_id": employee.pk,
        },
    )
    return employee


def new_handover(s: Side) -> Handover:
    return customers.handover_create(
        actor=actor_for(s.admin),
        kind="resignation",
        from_employee_id=new_employee_with_customer(s).pk,
        to_employee_id=new_employee(s).pk,
        reason=s.name("离职"),
    )


def handover_body(s: Side) -> dict[str, Any]:
    giver = new_employee_with_customer(s)
    return {
        "kind": "transfer",
        "from_employee_id": giver.pk,
        "to_employee_id": new_employee(s).pk,
        "reason": s.name("调岗"),
        "customer_ids": list(Customer.objects.filter(owner=giver).values_list("pk", flat=True)),
        "rest_to_pool": True,
    }


def due_follow_ups(s: Side) -> QuerySet[Customer]:
    """The admin's customers whose next follow-up falls before the end of the local day."""
    _, end = local_day(timezone.now(), time_zone_of(s.tenant.pk))
    return Customer.objects.filter(
        tenant=s.tenant, owner=s.admin, merged_into=None, next_follow_up_at__lt=end
    )


def new_tag_group(s: Side) -> TagGroup:
    return customers.tag_group_create(actor=actor_for(s.admin), name=s.name("标签组"))


def new_tag(s: Side) -> Tag:
    return customers.tag_create(
        actor=actor_for(s.admin), group_id=new_tag_group(s).pk, name=s.name("标签")
    )


def new_tag_rule(s: Side) -> TagRule:
    return customers.tag_rule_create(
        actor=actor_for(s.admin),
        name=s.name("规则"),
        tag_id=new_tag(s).pk,
        conditions={"event": "order", "within_days": 90, "op": "gte", "value": 3},
    )


def new_customer_tag(s: Side) -> CustomerTag:
    customer, tag = new_customer(s), new_tag(s)
    customers.customer_tags_add(actor=actor_for(s.admin), customer_id=customer.pk, tag_ids=[tag.pk])
    return CustomerTag.objects.get(customer=customer, tag=tag)


def event_payload(s: Side) -> dict[str, Any]:
    return {
        "event_id": f"{s.slug}-order-{next(_seq)}",
        "kind": "order",
        "channel": "taobao",
        "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "title": s.name("淘宝订单"),
        "amount": "199.00",
        "data": {"order_no": "TB20261101001", "phone": "13812345678"},
        "customer_id": new_customer(s).pk,
    }


def sent_event_payload(s: Side) -> dict[str, Any]:
    """An event already stored, as its sender retries it (answered 200 with the stored event)."""
    payload = event_payload(s)
    customers.event_ingest(
        actor=actor_for(s.admin),
        event=EventInput(
            **{
                **payload,
                "occurred_at": datetime.fromisoformat(payload["occurred_at"]),
                "amount": Decimal(payload["amount"]),
            },
        ),
    )
    return payload


def import_form(s: Side) -> dict[str, Any]:
    upload = io.BytesIO("姓名,手机号\n{},{}\n".format(s.name("导入客户"), new_phone()).encode())
    upload.name = "客户.csv"
    return {"file": upload, "mapping": '{"手机号": "phone"}', "skip_invalid": "true"}


def new_import_job(s: Side) -> ImportJob:
    """A finished import (skip mode) of one good row and one with a bad phone."""
    content = "姓名,手机号\n{},{}\n{},1392607\n".format(
        s.name("导入客户"), new_phone(), s.name("导入错行")
    ).encode()
    job = customers.import_job_create(
        actor=actor_for(s.admin), file_name="客户.csv", content=content, skip_invalid=True
    )
    customers.import_job_run(job_id=job.pk)
    return job


def segment_conditions(s: Side) -> dict[str, Any]:
    """VIP customers of 华东, or anyone with two orders in 90 days."""
    return {
        "any": [
            {
                "all": [
                    {"field": "region", "op": "in", "value": [s.org.east.pk]},
                    {"field": "level", "op": "in", "value": ["vip"]},
                ]
            },
            {"event": "order", "within_days": 90, "op": "gte", "value": 2},
        ]
    }


def new_segment(s: Side) -> Segment:
    return customers.segment_create(
        actor=actor_for(s.admin),
        name=s.name("分群"),
        description=s.name("说明"),
        conditions_data={"field": "region", "op": "in", "value": [s.org.east.pk]},
    )


def new_score_signal(s: Side) -> ScoreSignal:
    return customers.score_signal_create(
        actor=actor_for(s.admin),
        name=s.name("评分项"),
        conditions_data={"field": "level", "op": "in", "value": ["vip"]},
        points=30,
    )


# --- tickets ---


TICKET_FLOW = "after_sales"


def ticket_flow(s: Side) -> str:
    """The shipped after-sales SOP, published once in the side's tenant (tickets run on it)."""
    if not ProcessDefinition.objects.filter(tenant=s.tenant, key=TICKET_FLOW).exists():
        actor = actor_for(s.admin)
        flows.definition_save(
            actor=actor, key=TICKET_FLOW, name="售后维修 SOP", xml=shipped_flow_xml(TICKET_FLOW)
        )
        flows.definition_publish(actor=actor, key=TICKET_FLOW)
    return TICKET_FLOW


def template_body(s: Side) -> dict[str, Any]:
    return {
        "key": f"{s.slug}-tpl-{next(_seq)}",
        "name": s.name("模板"),
        "category": "售后",
        "description": s.name("报修说明"),
        "form": builtin_form("after_sales_repair"),
        "flow_key": ticket_flow(s),
        "default_priority": "B",
    }


def new_template(s: Side) -> TicketTemplate:
    """A fresh global template on the after-sales form and flow."""
    data = template_body(s)
    return tickets.template_create(actor=actor_for(s.admin), **data)


def new_revised_template(s: Side) -> TicketTemplate:
    """A template with a second version (its default priority changed), so it can be reverted."""
    template = new_template(s)
    tickets.template_update(
        actor=actor_for(s.admin), template_id=template.pk, changes={"default_priority": "A"}
    )
    return template


def new_public_template(s: Side) -> TicketTemplate:
    template = new_template(s)
    return tickets.template_publish_form(
        actor=actor_for(s.admin), template_id=template.pk, enabled=True
    )


# A region's own field on top of the after-sales form.
OWN_FIELDS = {
    "schema": {"properties": {"cold_chain_tracking": {"type": "string", "maxLength": 40}}},
    "ui": {"cold_chain_tracking": {"label": "冷链物流追踪号", "widget": "text", "order": 900}},
}


def new_override(s: Side) -> TicketTemplate:
    """上海's override of a fresh global template."""
    return tickets.override_create(
        actor=actor_for(s.admin),
        template_id=new_template(s).pk,
        region_id=s.org.shanghai.pk,
        own_fields=OWN_FIELDS,
    )


def inquiry_answers(s: Side) -> dict[str, Any]:
    """Answers of the after-sales form for a product question (the shortest valid filling)."""
    return {
        "contact_name": s.name("联系人"),
        "contact_phone": new_phone(),
        "service_type": "产品咨询",
        "question": s.name("咨询空调型号"),
    }


def new_ticket(s: Side, **changes: Any) -> Ticket:
    """A console ticket of a fresh template for a customer of 上海 (no queue, no owner: no
    routing rule matches), with `changes` written over it afterwards."""
    ticket = tickets.ticket_create(
        actor=actor_for(s.admin),
        new=tickets.NewTicket(
            template_key=new_template(s).key,
            answers=inquiry_answers(s),
            source="console",
            title=s.name("工单"),
            customer_id=new_customer(s).pk,
            region_id=s.org.shanghai.pk,
        ),
    ).ticket
    if changes:
        Ticket.objects.filter(pk=ticket.pk).update(**changes)
        ticket.refresh_from_db()
    return ticket


def new_queue(s: Side) -> Queue:
    return tickets.queue_save(
        actor=actor_for(s.admin),
        name=s.name("队列"),
        region_id=s.org.east.pk,
        member_ids=[s.admin.pk],
    )


def new_routing_rule(s: Side) -> RoutingRule:
    """A rule sending 华东's tickets of a template no ticket uses to a fresh queue."""
    return tickets.rule_save(
        actor=actor_for(s.admin),
        name=s.name("规则"),
        conditions={
            "all": [
                {"field": "region", "op": "within", "value": s.org.east.pk},
                {"field": "template", "op": "eq", "value": f"{s.slug}-none"},
            ]
        },
        queue_id=new_queue(s).pk,
        assignment={"rule": "least_loaded"},
    )


def new_opportunity(s: Side) -> Opportunity:
    return tickets.opportunity_create(
        actor=actor_for(s.admin),
        customer_id=new_customer(s).pk,
        title=s.name("商机"),
        amount=Decimal("8800.00"),
        region_id=s.org.shanghai.pk,
    )


def new_mailbox(s: Side) -> Mailbox:
    return tickets.mailbox_save(
        actor=actor_for(s.admin),
        address=f"{s.slug}.service{next(_seq)}@example.cn",
        template_id=new_template(s).pk,
    )


def new_attachment(s: Side) -> Attachment:
    """A photo the admin uploaded for a form answer (not yet on a ticket)."""
    upload = SimpleUploadedFile(f"{s.slug}-{next(_seq)}.png", PNG, content_type="image/png")
    return tickets.attachment_upload(actor=actor_for(s.admin), upload=upload)


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # enough of a PNG for an upload


def upload_form(s: Side) -> dict[str, Any]:
    upload = io.BytesIO(PNG)
    upload.name = f"{s.slug}-现场照片.png"
    return {"file": upload}


def ticket_body(s: Side) -> dict[str, Any]:
    return {
        "template": new_template(s).key,
        "answers": inquiry_answers(s),
        "source": "phone",
        "source_key": f"{s.slug}-call-{next(_seq)}",
        "title": s.name("新工单"),
        "customer_id": new_customer(s).pk,
        "region_id": s.org.shanghai.pk,
        "priority": "A",
        "contact_name": s.name("来电人"),
        "contact_phone": new_phone(),
        "contact_email": f"{s.slug}.{next(_seq)}@example.cn",
        "opportunity_id": new_opportunity(s).pk,
        "project_ref": "PRJ-2026-01",
        "shop_order_ref": "SO20261124001",
        "watcher_ids": [new_employee(s).pk],
        "attachment_keys": [new_attachment(s).key],
    }


def rule_body(s: Side) -> dict[str, Any]:
    return {
        "name": s.name("新规则"),
        "conditions": {"field": "region", "op": "within", "value": s.org.east.pk},
        "queue_id": new_queue(s).pk,
        "assignment": {"rule": "user", "employee_id": new_employee(s).pk},
        "priority": "A",
        "position": 5,
        "is_active": True,
    }


def dry_run_body(s: Side) -> dict[str, Any]:
    """A ticket as the dry run is asked about it, with a rule there to try."""
    new_routing_rule(s)
    return {
        "template": new_template(s).key,
        "source": "phone",
        "region_id": s.org.shanghai.pk,
        "customer_id": new_customer(s).pk,
        "priority": "A",
        "answers": inquiry_answers(s),
    }


def public_submission(s: Side) -> dict[str, Any]:
    return {
        "submission_id": f"{s.slug}-web-{next(_seq):08d}",
        "answers": inquiry_answers(s),
        "contact_name": s.name("网友"),
        "contact_phone": new_phone(),
        "contact_email": f"{s.slug}.{next(_seq)}@example.cn",
        "website": "",
    }


def populate(s: Side) -> None:
    """At least one row of every kind the API lists, all labelled with the side's label."""
    for build in (
        new_department,
        new_region,
        new_employee,
        new_frozen_employee,
        new_role,
        new_assignment,
        new_token,
        new_notification,
        new_event,
        new_own_task,
        new_calendar,
        new_customer,
        new_candidate,
        new_merge,
        new_tag_rule,
        new_customer_tag,
        new_pool_customer,
        new_follow_up,
        new_handover,
        new_import_job,
        new_segment,
        new_score_signal,
        new_override,
        new_public_template,
        new_routing_rule,
        new_mailbox,
        new_attachment,
        lambda s: new_ticket(s, opportunity=new_opportunity(s), owner=s.admin),
    ):
        build(s)


def _in_a_year() -> str:
    return (timezone.now() + timedelta(days=365)).isoformat()


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    target: Callable[[Side], dict[str, Any]] | None = None
    body: Callable[[Side], dict[str, Any]] | None = None
    body_refs: dict[str, Callable[[Side], Any]] = field(default_factory=dict)
    rows: Callable[[Side], QuerySet[Any]] | None = None
    shows: Callable[[Side], dict[str, Any]] | None = None
    query_refs: dict[str, Callable[[Side], Any]] = field(default_factory=dict)
    public: bool = False
    # The success status of the valid call where the operation documents several (201: a new
    # ticket; 200 would be a retried one); else the lowest documented.
    status: int | None = None
    # A multipart/form-data upload instead of a JSON body: valid form fields (files as
    # file-like objects with a `name`).
    form: Callable[[Side], dict[str, Any]] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _ids(**builders: Callable[[Side], Any]) -> Callable[[Side], dict[str, int]]:
    return lambda s: {name: build(s).pk for name, build in builders.items()}


def _pk(build: Callable[[Side], Any]) -> Callable[[Side], int]:
    return lambda s: build(s).pk


def _tenant_rows(model: type[Any]) -> Callable[[Side], QuerySet[Any]]:
    return lambda s: model.objects.filter(tenant=s.tenant)


_EMPLOYEE_FILTERS: dict[str, Callable[[Side], Any]] = {
    "department_id": lambda s: s.org.east_dept.pk,
    "region_id": lambda s: s.org.east.pk,
    "q": lambda s: s.label,
}
_EMPLOYEE_REFS: dict[str, Callable[[Side], int]] = {
    "department_id": _pk(new_department),
    "region_id": _pk(new_region),
    "manager_id": _pk(new_employee),
}


_CUSTOMER_FILTERS: dict[str, Callable[[Side], Any]] = {
    "region_id": lambda s: s.org.east.pk,
    "department_id": lambda s: s.org.east_dept.pk,
    "owner_id": lambda s: s.admin.pk,
    "q": lambda s: s.label,
}
_CUSTOMER_REFS: dict[str, Callable[[Side], int]] = {
    "region_id": _pk(new_region),
    "department_id": _pk(new_department),
    "owner_id": _pk(new_employee),
}


_TICKET_FILTERS: dict[str, Callable[[Side], Any]] = {
    "q": lambda s: s.label,
    "template": lambda s: new_ticket(s).template.key,
    "queue_id": lambda s: new_ticket(s, queue=new_queue(s)).queue_id,
    "owner_id": lambda s: new_ticket(s, owner=s.admin).owner_id,
    "region_id": lambda s: s.org.east.pk,
    "customer_id": lambda s: new_ticket(s).customer_id,
    "opportunity_id": lambda s: new_ticket(s, opportunity=new_opportunity(s)).opportunity_id,
}
_TICKET_REFS: dict[str, Callable[[Side], Any]] = {
    "customer_id": _pk(new_customer),
    "region_id": _pk(new_region),
    "opportunity_id": _pk(new_opportunity),
    "watcher_ids": lambda s: [new_employee(s).pk],
}
_RULE_REFS: dict[str, Callable[[Side], Any]] = {
    "queue_id": _pk(new_queue),
    "assignment": lambda s: {"rule": "user", "employee_id": new_employee(s).pk},
    "conditions": lambda s: {"field": "region", "op": "within", "value": new_region(s).pk},
}
_OPPORTUNITY_REFS: dict[str, Callable[[Side], Any]] = {
    "customer_id": _pk(new_customer),
    "owner_id": _pk(new_employee),
    "region_id": _pk(new_region),
}


ENDPOINTS: list[Endpoint] = [
    # --- auth ---
    Endpoint("GET", "/api/auth/csrf", public=True),
    Endpoint(
        "POST",
        "/api/auth/login",
        public=True,
        body=lambda s: {"username": s.admin.user.username, "password": FAST_PASSWORD},
    ),
    Endpoint("POST", "/api/auth/logout"),
    Endpoint(
        "GET",
        "/api/auth/me",
        shows=lambda s: {"employee_id": s.admin.pk, "tenant_id": s.tenant.pk},
    ),
    Endpoint(
        "GET",
        "/api/auth/tokens",
        rows=lambda s: ApiToken.objects.filter(tenant=s.tenant, employee=s.admin),
    ),
    Endpoint(
        "POST",
        "/api/auth/tokens",
        body=lambda s: {"name": s.name("集成"), "expires_at": _in_a_year()},
    ),
    Endpoint("POST", "/api/auth/tokens/{token_id}/revoke", target=_ids(token_id=new_token)),
    # --- org: tenant and permission catalogue ---
    Endpoint(
        "GET",
        "/api/org/tenant",
        shows=lambda s: {"id": s.tenant.pk, "name": s.tenant.name, "slug": s.tenant.slug},
    ),
    Endpoint("GET", "/api/org/permissions"),
    # --- org: departments ---
    Endpoint("GET", "/api/org/departments", rows=_tenant_rows(Department)),
    Endpoint(
        "POST",
        "/api/org/departments",
        body=lambda s: {"name": s.name("新部门"), "parent_id": s.org.hq.pk, "sort": 3},
        body_refs={"parent_id": _pk(new_department)},
    ),
    Endpoint(
        "PATCH",
        "/api/org/departments/{node_id}",
        target=_ids(node_id=new_department),
        body=lambda s: {"name": s.name("改名部门"), "parent_id": s.org.south_dept.pk, "sort": 5},
        body_refs={"parent_id": _pk(new_department)},
    ),
    Endpoint("DELETE", "/api/org/departments/{node_id}", target=_ids(node_id=new_department)),
    # --- org: regions ---
    Endpoint("GET", "/api/org/regions", rows=_tenant_rows(Region)),
    Endpoint(
        "POST",
        "/api/org/regions",
        body=lambda s: {
            "name": s.name("新区域"),
            "parent_id": s.org.east.pk,
            "sort": 2,
            "currency": "HKD",
            "timezone": "Asia/Hong_Kong",
        },
        body_refs={"parent_id": _pk(new_region)},
    ),
    Endpoint(
        "PATCH",
        "/api/org/regions/{node_id}",
        target=_ids(node_id=new_region),
        body=lambda s: {
            "name": s.name("改名区域"),
            "parent_id": s.org.south.pk,
            "currency": "USD",
            "timezone": "Asia/Tokyo",
        },
        body_refs={"parent_id": _pk(new_region)},
    ),
    Endpoint("DELETE", "/api/org/regions/{node_id}", target=_ids(node_id=new_region)),
    # --- org: employees ---
    Endpoint(
        "GET",
        "/api/org/employees",
        rows=_tenant_rows(Employee),
        query_refs=_EMPLOYEE_FILTERS,
    ),
    Endpoint(
        "POST",
        "/api/org/employees",
        body=lambda s: {
            "username": f"{s.slug}-new-{next(_seq)}",
            "password": "Jw-strong-pass-2468",
            "employee_no": f"N{next(_seq):05d}",
            "name": s.name("新员工"),
            "phone": "13912345678",
            "email": "new.hire@example.cn",
            "id_number": "310101199001011234",
            "title": "服务工程师",
            "department_id": s.org.east_dept.pk,
            "region_id": s.org.shanghai.pk,
            "manager_id": s.admin.pk,
        },
        body_refs=_EMPLOYEE_REFS,
    ),
    Endpoint(
        "POST",
        "/api/org/employees/export",
        rows=_tenant_rows(Employee),
        query_refs=_EMPLOYEE_FILTERS,
    ),
    Endpoint("GET", "/api/org/employees/{employee_id}", target=_ids(employee_id=new_employee)),
    Endpoint(
        "PATCH",
        "/api/org/employees/{employee_id}",
        target=_ids(employee_id=new_employee),
        body=lambda s: {
            "name": s.name("改名员工"),
            "title": "主管",
            "phone": "+8613700000000",
            "department_id": s.org.south_dept.pk,
            "region_id": s.org.guangzhou.pk,
            "manager_id": s.admin.pk,
        },
        body_refs=_EMPLOYEE_REFS,
    ),
    Endpoint(
        "POST",
        "/api/org/employees/{employee_id}/leave",
        target=_ids(employee_id=new_employee),
        body=lambda s: {"reason": "合同到期"},
    ),
    Endpoint(
        "POST",
        "/api/org/employees/{employee_id}/unfreeze",
        target=_ids(employee_id=new_frozen_employee),
        body=lambda s: {"reason": "已核实为正常导出"},
    ),
    # --- org: roles ---
    Endpoint("GET", "/api/org/roles", rows=_tenant_rows(Role)),
    Endpoint(
        "POST",
        "/api/org/roles",
        body=lambda s: {
            "name": s.name("新角色"),
            "description": "客服主管",
            "permissions": ["org.view", "customer.view"],
        },
    ),
    Endpoint("GET", "/api/org/roles/{role_id}", target=_ids(role_id=new_role)),
    Endpoint(
        "PATCH",
        "/api/org/roles/{role_id}",
        target=_ids(role_id=new_role),
        body=lambda s: {
            "name": s.name("改名角色"),
            "description": "调整后",
            "permissions": ["org.view", "audit.view"],
        },
    ),
    Endpoint("DELETE", "/api/org/roles/{role_id}", target=_ids(role_id=new_role)),
    # --- org: assignments ---
    Endpoint(
        "GET",
        "/api/org/assignments",
        rows=_tenant_rows(RoleAssignment),
        query_refs={"employee_id": lambda s: s.admin.pk},
    ),
    Endpoint(
        "POST",
        "/api/org/assignments",
        body=lambda s: {
            "employee_id": new_employee(s).pk,
            "role_id": new_role(s).pk,
            "scope": "department",
            "department_id": s.org.east_dept.pk,
            "region_id": s.org.east.pk,
            "starts_at": timezone.now().isoformat(),
            "expires_at": _in_a_year(),
            "reason": "临时支援华东",
        },
        body_refs={
            "employee_id": _pk(new_employee),
            "role_id": _pk(new_role),
            "department_id": _pk(new_department),
            "region_id": _pk(new_region),
        },
    ),
    Endpoint(
        "POST",
        "/api/org/assignments/{assignment_id}/revoke",
        target=_ids(assignment_id=new_assignment),
        body=lambda s: {"reason": "支援结束"},
    ),
    # --- audit ---
    Endpoint(
        "GET",
        "/api/audit/events",
        rows=_tenant_rows(AuditEvent),
        query_refs={"actor_id": lambda s: s.admin.pk},
    ),
    Endpoint("GET", "/api/audit/events/{event_id}", target=_ids(event_id=new_event)),
    # --- notify ---
    Endpoint(
        "GET",
        "/api/notify/inbox",
        rows=lambda s: Notification.objects.filter(tenant=s.tenant, recipient=s.admin),
    ),
    Endpoint(
        "GET",
        "/api/notify/inbox/unread",
        shows=lambda s: {
            "unread": Notification.objects.filter(
                tenant=s.tenant, recipient=s.admin, read_at__isnull=True
            ).count()
        },
    ),
    Endpoint(
        "POST",
        "/api/notify/inbox/{notification_id}/read",
        target=_ids(notification_id=new_notification),
    ),
    Endpoint("POST", "/api/notify/inbox/read-all"),
    Endpoint(
        "GET",
        "/api/notify/inbox/feed",
        shows=lambda s: {
            "unread": Notification.objects.filter(
                tenant=s.tenant, recipient=s.admin, read_at__isnull=True
            ).count()
        },
    ),
    Endpoint("GET", "/api/notify/preferences/me", shows=lambda s: {"employee_id": s.admin.pk}),
    Endpoint(
        "PUT",
        "/api/notify/preferences/me",
        body=lambda s: {"muted_channels": ["sms"], "addresses": {"wecom_userid": s.slug}},
    ),
    Endpoint(
        "PUT",
        "/api/notify/preferences/{employee_id}",
        target=_ids(employee_id=new_employee),
        body=lambda s: {"muted_channels": ["email"], "quiet_start": "23:00", "quiet_end": "07:00"},
    ),
    Endpoint("GET", "/api/notify/templates", rows=_tenant_rows(MessageTemplate)),
    Endpoint("POST", "/api/notify/templates", body=notify_template_body),
    Endpoint(
        "PUT",
        "/api/notify/templates/{template_id}",
        target=_ids(template_id=new_message_template),
        body=notify_template_body,
    ),
    Endpoint(
        "DELETE",
        "/api/notify/templates/{template_id}",
        target=_ids(template_id=new_message_template),
    ),
    Endpoint("GET", "/api/notify/rules", rows=_tenant_rows(NotifyRule)),
    Endpoint("POST", "/api/notify/rules", body=notify_rule_body, body_refs=_NOTIFY_RULE_REFS),
    Endpoint(
        "PUT",
        "/api/notify/rules/{rule_id}",
        target=_ids(rule_id=new_notify_rule),
        body=notify_rule_body,
        body_refs=_NOTIFY_RULE_REFS,
    ),
    Endpoint("DELETE", "/api/notify/rules/{rule_id}", target=_ids(rule_id=new_notify_rule)),
    Endpoint("GET", "/api/notify/channels"),
    Endpoint(
        "PUT",
        "/api/notify/channels",
        body=lambda s: {
            "channel": "webhook",
            "settings": {"url": "https://hooks.example.com/jingwei", "secret": "s" * 20},
        },
    ),
    Endpoint("GET", "/api/notify/settings", shows=lambda s: {"quiet_enabled": True}),
    Endpoint(
        "PUT",
        "/api/notify/settings",
        body=lambda s: {"quiet_start": "21:30", "quiet_end": "07:30", "quiet_enabled": True},
    ),
    Endpoint("GET", "/api/notify/rosters", rows=_tenant_rows(Roster)),
    Endpoint(
        "POST",
        "/api/notify/rosters",
        body=lambda s: {
            "name": s.name("值班表"),
            "region_id": s.org.east.pk,
            "fallback_id": new_employee(s).pk,
        },
        body_refs={"region_id": _pk(new_region), "fallback_id": _pk(new_employee)},
    ),
    Endpoint(
        "PUT",
        "/api/notify/rosters/{roster_id}",
        target=_ids(roster_id=new_roster),
        body=lambda s: {"name": s.name("值班表")},
    ),
    Endpoint("GET", "/api/notify/rosters/{roster_id}/shifts", target=_ids(roster_id=new_roster)),
    Endpoint(
        "POST",
        "/api/notify/rosters/{roster_id}/shifts",
        target=_ids(roster_id=new_roster),
        body=shifts_body,
        body_refs={"shifts": lambda s: shifts_body(s)["shifts"]},
    ),
    Endpoint("DELETE", "/api/notify/rosters/{roster_id}/shifts/{shift_id}", target=new_shift),
    Endpoint("GET", "/api/notify/rosters/{roster_id}/on-duty", target=_ids(roster_id=new_roster)),
    Endpoint(
        "POST",
        "/api/notify/events",
        body=lambda s: {
            "name": "ticket.created",
            "key": f"{s.slug}-k{next(_seq)}",
            "payload": {"ticket": {"number": s.name("工单")}},
        },
        status=201,
    ),
    Endpoint("GET", "/api/notify/deliveries", rows=_tenant_rows(Delivery)),
    Endpoint("GET", "/api/notify/deliveries/stats"),
    Endpoint(
        "POST",
        "/api/notify/deliveries/{delivery_id}/retry",
        target=_ids(delivery_id=new_dead_delivery),
    ),
    # --- flows ---
    Endpoint("GET", "/api/flows/definitions", rows=_tenant_rows(ProcessDefinition)),
    Endpoint(
        "POST",
        "/api/flows/definitions",
        body=lambda s: {
            "key": f"{s.slug}-new-{next(_seq)}",
            "name": s.name("新流程"),
            "xml": (FLOW_FIXTURES / "simple_linear.bpmn").read_text(),
        },
    ),
    Endpoint(
        "GET", "/api/flows/definitions/{definition_id}", target=_ids(definition_id=new_definition)
    ),
    Endpoint(
        "POST",
        "/api/flows/definitions/{definition_id}/publish",
        target=_ids(definition_id=new_definition),
    ),
    Endpoint(
        "GET",
        "/api/flows/definitions/{definition_id}/versions",
        target=_ids(definition_id=new_definition),
    ),
    Endpoint(
        "POST",
        "/api/flows/definitions/{definition_id}/migrate",
        target=_ids(definition_id=new_twice_published),
        body=lambda s: {"from_number": 1, "to_number": 2},
    ),
    Endpoint("GET", "/api/flows/versions/{version_id}/bpmn", target=_ids(version_id=new_version)),
    Endpoint(
        "GET", "/api/flows/versions/{version_id}/statistics", target=_ids(version_id=new_version)
    ),
    Endpoint("GET", "/api/flows/instances", rows=_tenant_rows(FlowInstance)),
    Endpoint(
        "POST",
        "/api/flows/instances",
        body=lambda s: {
            "key": new_definition(s).key,
            "data": {"amount": 100, "service_type": "售后服务"},
            "business_key": s.name("案件"),
            "region_id": s.org.shanghai.pk,
            "department_id": s.org.east_dept.pk,
        },
        body_refs={"region_id": _pk(new_region), "department_id": _pk(new_department)},
    ),
    Endpoint("GET", "/api/flows/instances/{instance_id}", target=_ids(instance_id=new_instance)),
    Endpoint(
        "POST",
        "/api/flows/instances/{instance_id}/messages",
        target=_ids(instance_id=new_waiting_instance),
        body=lambda s: {"message": "paid", "data": {"paid": True}},
    ),
    Endpoint(
        "POST",
        "/api/flows/instances/{instance_id}/cancel",
        target=_ids(instance_id=new_waiting_instance),
        body=lambda s: {"reason": "客户撤单"},
    ),
    Endpoint(
        "GET",
        "/api/flows/tasks",
        rows=lambda s: FlowTask.objects.filter(tenant=s.tenant, assignee=s.admin, status="open"),
    ),
    Endpoint(
        "POST",
        "/api/flows/tasks/{task_id}/complete",
        target=_ids(task_id=new_own_task),
        body=lambda s: {"outcome": "", "data": {"note": "已处理"}},
    ),
    Endpoint("POST", "/api/flows/tasks/{task_id}/claim", target=_ids(task_id=new_claimable_task)),
    Endpoint(
        "POST",
        "/api/flows/tasks/{task_id}/release",
        target=_ids(task_id=new_own_task),
        body=lambda s: {"reason": "外出"},
    ),
    Endpoint(
        "POST",
        "/api/flows/tasks/{task_id}/delegate",
        target=_ids(task_id=new_own_task),
        body=lambda s: {"assignee_id": new_employee(s).pk, "reason": "请代办"},
        body_refs={"assignee_id": _pk(new_employee)},
    ),
    Endpoint(
        "POST",
        "/api/flows/tasks/{task_id}/transfer",
        target=_ids(task_id=new_own_task),
        body=lambda s: {"assignee_id": new_employee(s).pk, "reason": "调度改派"},
        body_refs={"assignee_id": _pk(new_employee)},
    ),
    Endpoint("GET", "/api/flows/calendars", rows=_tenant_rows(WorkCalendar)),
    Endpoint(
        "PUT",
        "/api/flows/calendars",
        body=lambda s: {
            "name": s.name("区域日历"),
            "region_id": new_region(s).pk,
            "timezone": "Asia/Shanghai",
            "hours": CALENDAR_HOURS,
            "public_holidays": "cn",
            "holidays": ["2026-12-31"],
            "workdays": {"2026-12-26": "mon"},
        },
        body_refs={"region_id": _pk(new_region)},
    ),
    Endpoint("GET", "/api/flows/calendars/{calendar_id}", target=_ids(calendar_id=new_calendar)),
    Endpoint("DELETE", "/api/flows/calendars/{calendar_id}", target=_ids(calendar_id=new_calendar)),
    # --- customers ---
    Endpoint(
        "GET",
        "/api/customers",
        rows=lambda s: Customer.objects.filter(tenant=s.tenant, merged_into=None),
        query_refs=_CUSTOMER_FILTERS,
    ),
    Endpoint(
        "POST",
        "/api/customers",
        body=lambda s: {
            "kind": "person",
            "name": s.name("新客户"),
            "company_name": s.name("新公司"),
            "region_id": s.org.shanghai.pk,
            "department_id": s.org.east_dept.pk,
            "owner_id": s.admin.pk,
            "level": "vip",
            "source": "官网",
            "remark": "咨询空调维修",
            "collaborator_ids": [new_employee(s).pk],
            "identities": [
                {"kind": "phone", "value": f"+86 {new_phone()}", "verified": True},
                {"kind": "wechat_openid", "value": f"oDemo{next(_seq)}", "namespace": "wx0demo"},
            ],
        },
        body_refs=_CUSTOMER_REFS,
    ),
    Endpoint(
        "GET",
        "/api/customers/merge-candidates",
        rows=lambda s: MergeCandidate.objects.filter(
            tenant=s.tenant,
            status="proposed",
            customer__merged_into=None,
            other__merged_into=None,
        ),
        query_refs={"customer_id": lambda s: new_candidate(s).customer_id},
    ),
    Endpoint(
        "POST",
        "/api/customers/merge-candidates/{candidate_id}/accept",
        target=_ids(candidate_id=new_candidate),
        body=lambda s: {"note": "同一人"},
    ),
    Endpoint(
        "POST",
        "/api/customers/merge-candidates/{candidate_id}/reject",
        target=_ids(candidate_id=new_candidate),
        body=lambda s: {"note": "不是同一人"},
    ),
    Endpoint(
        "POST",
        "/api/customers/merges/{merge_id}/undo",
        target=_ids(merge_id=new_merge),
        body=lambda s: {"reason": "合并错了"},
    ),
    Endpoint("GET", "/api/customers/{customer_id}", target=_ids(customer_id=new_customer)),
    Endpoint(
        "PATCH",
        "/api/customers/{customer_id}",
        target=_ids(customer_id=new_customer),
        body=lambda s: {
            "name": s.name("改名客户"),
            "level": "vip",
            "region_id": s.org.guangzhou.pk,
            "department_id": s.org.south_dept.pk,
            "owner_id": s.admin.pk,
            "collaborator_ids": [new_employee(s).pk],
        },
        body_refs=_CUSTOMER_REFS,
    ),
    Endpoint(
        "POST",
        "/api/customers/{customer_id}/identities",
        target=_ids(customer_id=new_customer),
        body=lambda s: {
            "kind": "email",
            "value": f"{s.slug}.{next(_seq)}@Example.CN",
            "verified": True,
            "source": "manual",
        },
    ),
    Endpoint(
        "DELETE",
        "/api/customers/{customer_id}/identities/{identity_id}",
        target=new_customer_identity,
    ),
    Endpoint(
        "POST",
        "/api/customers/{customer_id}/merge",
        target=_ids(customer_id=new_customer),
        body=lambda s: {"source_id": new_customer(s).pk, "reason": "同一人"},
        body_refs={"source_id": _pk(new_customer)},
    ),
    Endpoint("GET", "/api/customers/{customer_id}/merges", target=_ids(customer_id=new_customer)),
    # --- customers: pools, owners, follow-ups, handovers ---
    Endpoint("GET", "/api/customers/pools", rows=_tenant_rows(CustomerPool)),
    Endpoint(
        "POST",
        "/api/customers/pools",
        body=lambda s: {
            "region_id": new_region(s).pk,
            "name": s.name("新公海"),
            "claim_limit": 30,
            "daily_claim_limit": 10,
            "return_after_days": 15,
            "enabled": True,
        },
        body_refs={"region_id": _pk(new_region)},
    ),
    Endpoint("GET", "/api/customers/pools/{pool_id}", target=_ids(pool_id=new_pool)),
    Endpoint(
        "PATCH",
        "/api/customers/pools/{pool_id}",
        target=_ids(pool_id=new_pool),
        body=lambda s: {
            "region_id": new_region(s).pk,
            "name": s.name("改名公海"),
            "claim_limit": 80,
            "daily_claim_limit": 5,
            "return_after_days": 0,
            "enabled": False,
        },
        body_refs={"region_id": _pk(new_region)},
    ),
    Endpoint("DELETE", "/api/customers/pools/{pool_id}", target=_ids(pool_id=new_pool)),
    Endpoint(
        "GET",
        "/api/customers/pools/{pool_id}/customers",
        target=_ids(pool_id=new_pool_with_customer),
    ),
    Endpoint("GET", "/api/customers/follow-ups/due", rows=due_follow_ups),
    Endpoint(
        "GET",
        "/api/customers/handovers",
        rows=_tenant_rows(Handover),
        query_refs={
            "employee_id": lambda s: Handover.objects.filter(tenant=s.tenant)[0].to_employee_id
        },
    ),
    Endpoint(
        "POST",
        "/api/customers/handovers",
        body=handover_body,
        body_refs={
            "from_employee_id": _pk(new_employee_with_customer),
            "to_employee_id": _pk(new_employee),
        },
    ),
    Endpoint(
        "POST", "/api/customers/{customer_id}/claim", target=_ids(customer_id=new_pool_customer)
    ),
    Endpoint(
        "POST",
        "/api/customers/{customer_id}/release",
        target=_ids(customer_id=new_owned_pool_customer),
        body=lambda s: {"reason": s.name("暂无意向")},
    ),
    Endpoint(
        "POST",
        "/api/customers/{customer_id}/assign",
        target=_ids(customer_id=new_customer),
        body=lambda s: {"employee_id": new_employee(s).pk, "reason": s.name("分配")},
        body_refs={"employee_id": _pk(new_employee)},
    ),
    Endpoint(
        "GET", "/api/customers/{customer_id}/ownership", target=_ids(customer_id=new_customer)
    ),
    Endpoint(
        "POST",
        "/api/customers/{customer_id}/follow-ups",
        target=_ids(customer_id=new_customer),
        body=lambda s: {
            "kind": "visit",
            "content": s.name("上门检查空调"),
            "happened_at": (timezone.now() - timedelta(hours=1)).isoformat(),
            "next_at": _in_a_year(),
        },
    ),
    Endpoint(
        "GET", "/api/customers/{customer_id}/follow-ups", target=_ids(customer_id=new_customer)
    ),
    # --- customers: tags, auto-tag rules, behaviour events, timeline, settings ---
    Endpoint("GET", "/api/customers/tag-groups", rows=_tenant_rows(TagGroup)),
    Endpoint(
        "POST",
        "/api/customers/tag-groups",
        body=lambda s: {
            "name": s.name("新标签组"),
            "choice": "single",
            "description": "客户价值分层",
            "sort": 1,
        },
    ),
    Endpoint(
        "PATCH",
        "/api/customers/tag-groups/{group_id}",
        target=_ids(group_id=new_tag_group),
        body=lambda s: {
            "name": s.name("改名标签组"),
            "choice": "single",
            "description": "改为单选",
            "sort": 2,
        },
    ),
    Endpoint("DELETE", "/api/customers/tag-groups/{group_id}", target=_ids(group_id=new_tag_group)),
    Endpoint(
        "POST",
        "/api/customers/tag-groups/{group_id}/tags",
        target=_ids(group_id=new_tag_group),
        body=lambda s: {"name": s.name("新标签"), "color": "#409EFF", "sort": 2},
    ),
    Endpoint(
        "POST",
        "/api/customers/tags/bulk",
        body=lambda s: {
            "customer_ids": [new_customer(s).pk, new_customer(s).pk],
            "add_tag_ids": [new_tag(s).pk],
            "remove_tag_ids": [new_tag(s).pk],
        },
    ),
    Endpoint(
        "PATCH",
        "/api/customers/tags/{tag_id}",
        target=_ids(tag_id=new_tag),
        body=lambda s: {"name": s.name("改名标签"), "color": "#F56C6C", "sort": 3},
    ),
    Endpoint("DELETE", "/api/customers/tags/{tag_id}", target=_ids(tag_id=new_tag)),
    Endpoint("GET", "/api/customers/tag-rules", rows=_tenant_rows(TagRule)),
    Endpoint(
        "POST",
        "/api/customers/tag-rules",
        body=lambda s: {
            "name": s.name("新规则"),
            "tag_id": new_tag(s).pk,
            "conditions": {"event": "order", "within_days": 90, "op": "gte", "value": 3},
            "enabled": True,
            "remove_unmatched": True,
        },
        body_refs={"tag_id": _pk(new_tag)},
    ),
    Endpoint(
        "POST",
        "/api/customers/tag-rules/preview",
        body=lambda s: {"conditions": {"field": "level", "op": "in", "value": ["vip", "normal"]}},
    ),
    Endpoint("GET", "/api/customers/tag-rules/{rule_id}", target=_ids(rule_id=new_tag_rule)),
    Endpoint(
        "PATCH",
        "/api/customers/tag-rules/{rule_id}",
        target=_ids(rule_id=new_tag_rule),
        body=lambda s: {
            "name": s.name("改名规则"),
            "tag_id": new_tag(s).pk,
            "conditions": {"field": "level", "op": "eq", "value": "vip"},
            "enabled": False,
            "remove_unmatched": False,
        },
        body_refs={"tag_id": _pk(new_tag)},
    ),
    Endpoint("DELETE", "/api/customers/tag-rules/{rule_id}", target=_ids(rule_id=new_tag_rule)),
    Endpoint("POST", "/api/customers/tag-rules/{rule_id}/run", target=_ids(rule_id=new_tag_rule)),
    Endpoint("GET", "/api/customers/{customer_id}/tags", target=_ids(customer_id=new_customer)),
    Endpoint(
        "POST",
        "/api/customers/{customer_id}/tags",
        target=_ids(customer_id=new_customer),
        body=lambda s: {"tag_ids": [new_tag(s).pk, new_tag(s).pk]},
    ),
    Endpoint(
        "DELETE",
        "/api/customers/{customer_id}/tags/{tag_id}",
        target=lambda s: (lambda link: {"customer_id": link.customer_id, "tag_id": link.tag_id})(
            new_customer_tag(s)
        ),
    ),
    Endpoint(
        "POST",
        "/api/customers/events",
        body=sent_event_payload,
        body_refs={"customer_id": _pk(new_customer)},
    ),
    Endpoint("POST", "/api/customers/events/batch", body=lambda s: {"items": [event_payload(s)]}),
    Endpoint("GET", "/api/customers/settings", shows=lambda s: {"event_retention_days": 730}),
    Endpoint("PUT", "/api/customers/settings", body=lambda s: {"event_retention_days": 365}),
    Endpoint("GET", "/api/customers/{customer_id}/timeline", target=_ids(customer_id=new_customer)),
    Endpoint("POST", "/api/customers/imports", form=import_form),
    Endpoint("GET", "/api/customers/imports", rows=_tenant_rows(ImportJob)),
    Endpoint("GET", "/api/customers/imports/template.xlsx"),
    Endpoint("GET", "/api/customers/imports/{job_id}", target=_ids(job_id=new_import_job)),
    Endpoint(
        "GET", "/api/customers/imports/{job_id}/errors.csv", target=_ids(job_id=new_import_job)
    ),
    # --- customers: segments, scoring, exports ---
    Endpoint(
        "POST",
        "/api/customers/export",
        rows=lambda s: Customer.objects.filter(tenant=s.tenant, merged_into=None),
        query_refs=_CUSTOMER_FILTERS,
    ),
    Endpoint(
        "GET",
        "/api/customers/segments",
        rows=_tenant_rows(Segment),
        query_refs={"q": lambda s: s.label},
    ),
    Endpoint(
        "POST",
        "/api/customers/segments",
        body=lambda s: {
            "name": s.name("新分群"),
            "description": "华东 VIP 或高频下单",
            "conditions": segment_conditions(s),
        },
    ),
    Endpoint(
        "POST",
        "/api/customers/segments/preview",
        body=lambda s: {"conditions": segment_conditions(s)},
    ),
    Endpoint("GET", "/api/customers/segments/{segment_id}", target=_ids(segment_id=new_segment)),
    Endpoint(
        "PATCH",
        "/api/customers/segments/{segment_id}",
        target=_ids(segment_id=new_segment),
        body=lambda s: {
            "name": s.name("改名分群"),
            "description": "改后",
            "conditions": segment_conditions(s),
        },
    ),
    Endpoint("DELETE", "/api/customers/segments/{segment_id}", target=_ids(segment_id=new_segment)),
    Endpoint(
        "GET",
        "/api/customers/segments/{segment_id}/members",
        target=_ids(segment_id=new_segment),
    ),
    Endpoint(
        "POST",
        "/api/customers/segments/{segment_id}/export",
        target=_ids(segment_id=new_segment),
    ),
    Endpoint("GET", "/api/customers/score-signals", rows=_tenant_rows(ScoreSignal)),
    Endpoint(
        "POST",
        "/api/customers/score-signals",
        body=lambda s: {
            "name": s.name("新评分项"),
            "conditions": {"event": "order", "within_days": 90, "op": "gte", "value": 3},
            "points": 25,
            "enabled": True,
            "sort": 2,
        },
    ),
    Endpoint("POST", "/api/customers/score-signals/recompute"),
    Endpoint(
        "PATCH",
        "/api/customers/score-signals/{signal_id}",
        target=_ids(signal_id=new_score_signal),
        body=lambda s: {
            "name": s.name("改名评分项"),
            "conditions": {"field": "last_followed_at", "op": "before_days", "value": 30},
            "points": -10,
            "enabled": False,
            "sort": 5,
        },
    ),
    Endpoint(
        "DELETE",
        "/api/customers/score-signals/{signal_id}",
        target=_ids(signal_id=new_score_signal),
    ),
    Endpoint("GET", "/api/customers/{customer_id}/score", target=_ids(customer_id=new_customer)),
    # --- tickets ---
    # templates
    Endpoint("GET", "/api/tickets/templates", rows=_tenant_rows(TicketTemplate)),
    Endpoint("POST", "/api/tickets/templates", body=template_body),
    Endpoint("GET", "/api/tickets/templates/{template_id}", target=_ids(template_id=new_template)),
    Endpoint(
        "PATCH",
        "/api/tickets/templates/{template_id}",
        target=_ids(template_id=new_template),
        body=lambda s: {
            "name": s.name("改名模板"),
            "category": "维修",
            "description": "改后的说明",
            "is_active": True,
            "form": builtin_form("after_sales_repair"),
            "flow_key": ticket_flow(s),
            "default_priority": "A",
            "note": "调整默认优先级",
        },
    ),
    Endpoint(
        "POST",
        "/api/tickets/templates/{template_id}/overrides",
        target=_ids(template_id=new_template),
        body=lambda s: {
            "region_id": new_region(s).pk,
            "own_fields": OWN_FIELDS,
            "name": s.name("区域模板"),
            "note": "增加冷链物流追踪",
        },
        body_refs={"region_id": _pk(new_region)},
    ),
    Endpoint(
        "POST",
        "/api/tickets/templates/{template_id}/revert",
        target=_ids(template_id=new_revised_template),
        body=lambda s: {"note": "活动结束"},
    ),
    Endpoint(
        "GET",
        "/api/tickets/templates/{template_id}/versions",
        target=_ids(template_id=new_revised_template),
    ),
    Endpoint(
        "POST",
        "/api/tickets/templates/{template_id}/public-form",
        target=_ids(template_id=new_template),
        body=lambda s: {"enabled": True},
    ),
    Endpoint(
        "GET",
        "/api/tickets/templates/{template_id}/qr.{fmt}",
        target=lambda s: {"template_id": new_public_template(s).pk, "fmt": "png"},
    ),
    # queues, routing rules, mailboxes
    Endpoint("GET", "/api/tickets/queues", rows=_tenant_rows(Queue)),
    Endpoint(
        "POST",
        "/api/tickets/queues",
        body=lambda s: {
            "name": s.name("新队列"),
            "region_id": s.org.east.pk,
            "member_ids": [new_employee(s).pk, s.admin.pk],
        },
        body_refs={"region_id": _pk(new_region), "member_ids": lambda s: [new_employee(s).pk]},
    ),
    Endpoint(
        "PUT",
        "/api/tickets/queues/{queue_id}",
        target=_ids(queue_id=new_queue),
        body=lambda s: {
            "name": s.name("改名队列"),
            "region_id": s.org.south.pk,
            "member_ids": [new_employee(s).pk],
        },
        body_refs={"region_id": _pk(new_region), "member_ids": lambda s: [new_employee(s).pk]},
    ),
    Endpoint("GET", "/api/tickets/routing-rules", rows=_tenant_rows(RoutingRule)),
    Endpoint(
        "POST",
        "/api/tickets/routing-rules",
        body=rule_body,
        body_refs=_RULE_REFS,
    ),
    Endpoint(
        "PUT",
        "/api/tickets/routing-rules/{rule_id}",
        target=_ids(rule_id=new_routing_rule),
        body=rule_body,
        body_refs=_RULE_REFS,
    ),
    Endpoint(
        "DELETE", "/api/tickets/routing-rules/{rule_id}", target=_ids(rule_id=new_routing_rule)
    ),
    Endpoint(
        "POST",
        "/api/tickets/routing-rules/dry-run",
        body=dry_run_body,
        body_refs={"region_id": _pk(new_region), "customer_id": _pk(new_customer)},
    ),
    Endpoint("GET", "/api/tickets/mailboxes", rows=_tenant_rows(Mailbox)),
    Endpoint(
        "POST",
        "/api/tickets/mailboxes",
        body=lambda s: {
            "address": f"{s.slug}.help{next(_seq)}@example.cn",
            "template_id": new_template(s).pk,
            "region_id": s.org.shanghai.pk,
            "active": True,
        },
        body_refs={"template_id": _pk(new_template), "region_id": _pk(new_region)},
    ),
    # tickets
    Endpoint(
        "POST",
        "/api/tickets/bulk/assign",
        body=lambda s: {
            "ticket_ids": [new_ticket(s).pk, new_ticket(s).pk],
            "owner_id": new_employee(s).pk,
            "reason": "按片区派单",
        },
        body_refs={"ticket_ids": lambda s: [new_ticket(s).pk], "owner_id": _pk(new_employee)},
    ),
    Endpoint(
        "POST",
        "/api/tickets/bulk/close",
        body=lambda s: {"ticket_ids": [new_ticket(s).pk, new_ticket(s).pk], "reason": "重复报修"},
        body_refs={"ticket_ids": lambda s: [new_ticket(s).pk]},
    ),
    Endpoint(
        "POST",
        "/api/tickets/export",
        body=lambda s: {},
        rows=_tenant_rows(Ticket),
        query_refs=_TICKET_FILTERS,
    ),
    Endpoint("POST", "/api/tickets/attachments", form=upload_form),
    Endpoint(
        "GET",
        "/api/tickets/attachments/{key}",
        target=lambda s: {"key": new_attachment(s).key},
    ),
    Endpoint("GET", "/api/tickets", rows=_tenant_rows(Ticket), query_refs=_TICKET_FILTERS),
    Endpoint("POST", "/api/tickets", body=ticket_body, body_refs=_TICKET_REFS, status=201),
    Endpoint("GET", "/api/tickets/{ticket_id}", target=_ids(ticket_id=new_ticket)),
    Endpoint(
        "PATCH",
        "/api/tickets/{ticket_id}",
        target=_ids(ticket_id=new_ticket),
        body=lambda s: {
            "title": s.name("改名工单"),
            "priority": "S",
            "customer_id": new_customer(s).pk,
            "opportunity_id": new_opportunity(s).pk,
            "project_ref": "PRJ-2026-02",
            "shop_order_ref": "SO20261124002",
        },
        body_refs={"customer_id": _pk(new_customer), "opportunity_id": _pk(new_opportunity)},
    ),
    Endpoint("GET", "/api/tickets/{ticket_id}/timeline", target=_ids(ticket_id=new_ticket)),
    Endpoint(
        "POST",
        "/api/tickets/{ticket_id}/assign",
        target=_ids(ticket_id=new_ticket),
        body=lambda s: {"owner_id": new_employee(s).pk, "reason": "上海片区"},
        body_refs={"owner_id": _pk(new_employee)},
    ),
    Endpoint(
        "POST",
        "/api/tickets/{ticket_id}/close",
        target=_ids(ticket_id=new_ticket),
        body=lambda s: {"reason": "客户撤回"},
    ),
    Endpoint("GET", "/api/tickets/{ticket_id}/comments", target=_ids(ticket_id=new_ticket)),
    Endpoint(
        "POST",
        "/api/tickets/{ticket_id}/comments",
        target=_ids(ticket_id=new_ticket),
        body=lambda s: {"body": s.name("已联系客户"), "visibility": "public"},
    ),
    Endpoint(
        "POST",
        "/api/tickets/{ticket_id}/watchers",
        target=_ids(ticket_id=new_ticket),
        body=lambda s: {"employee_id": new_employee(s).pk, "watching": True},
        body_refs={"employee_id": _pk(new_employee)},
    ),
    Endpoint(
        "POST",
        "/api/tickets/{ticket_id}/opportunity",
        target=_ids(ticket_id=new_ticket),
        body=lambda s: {
            "title": s.name("换新机商机"),
            "amount": "12000.50",
            "stage": "qualified",
            "expected_close": "2026-12-31",
        },
    ),
    Endpoint(
        "GET",
        "/api/tickets/{ticket_id}/progress-qr.{fmt}",
        target=lambda s: {"ticket_id": new_ticket(s).pk, "fmt": "svg"},
    ),
    # opportunities
    Endpoint(
        "GET",
        "/api/opportunities",
        rows=_tenant_rows(Opportunity),
        query_refs={
            "customer_id": lambda s: new_opportunity(s).customer_id,
            "owner_id": lambda s: s.admin.pk,
        },
    ),
    Endpoint(
        "POST",
        "/api/opportunities",
        body=lambda s: {
            "title": s.name("新商机"),
            "customer_id": new_customer(s).pk,
            "stage": "proposal",
            "amount": "56000.00",
            "currency": "CNY",
            "source": "展会",
            "owner_id": new_employee(s).pk,
            "region_id": s.org.shanghai.pk,
            "expected_close": "2026-12-31",
        },
        body_refs=_OPPORTUNITY_REFS,
    ),
    Endpoint(
        "GET",
        "/api/opportunities/{opportunity_id}",
        target=_ids(opportunity_id=new_opportunity),
    ),
    Endpoint(
        "PATCH",
        "/api/opportunities/{opportunity_id}",
        target=_ids(opportunity_id=new_opportunity),
        body=lambda s: {
            "title": s.name("改名商机"),
            "stage": "negotiation",
            "amount": "60000.00",
            "currency": "USD",
            "source": "老客户转介绍",
            "owner_id": new_employee(s).pk,
            "region_id": s.org.guangzhou.pk,
            "expected_close": "2027-01-15",
        },
        body_refs={"owner_id": _pk(new_employee), "region_id": _pk(new_region)},
    ),
    # the public form and the progress page (no login; an unknown token answers 404)
    Endpoint(
        "GET",
        "/api/public/forms/{token}",
        public=True,
        target=lambda s: {"token": new_public_template(s).public_token},
    ),
    Endpoint(
        "POST",
        "/api/public/forms/{token}",
        public=True,
        target=lambda s: {"token": new_public_template(s).public_token},
        body=public_submission,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/public/progress/{token}",
        public=True,
        target=lambda s: {"token": new_ticket(s).progress_token},
    ),
]

BY_KEY: dict[tuple[str, str], Endpoint] = {ep.key: ep for ep in ENDPOINTS}
assert len(BY_KEY) == len(ENDPOINTS), "an endpoint is listed twice"
