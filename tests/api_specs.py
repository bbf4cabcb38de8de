"""The table of every API endpoint, and how to exercise it.

One row per operation (method + path template). A row says:

- `target`: builds, in a given tenant, an object the operation can act on *successfully* (a leaf
  department for DELETE, a frozen employee for unfreeze, …) and returns the path parameters naming
  it. Built in the caller's own tenant it proves the call works; built in another tenant it must
  answer exactly like a missing id.
- `body`: a valid request body for the caller's side (it may build what it refers to).
- `body_refs`: body fields that name other objects, with a builder of such an object in a given
  tenant: another tenant's id there must be refused exactly like a missing one.
- `rows`: for a read, exactly the rows the side's admin must get back; `shows`: fields a
  single-object read must carry; `query_refs`: filters that point at objects (another tenant's
  object must answer exactly like a missing one).

tests/test_api_contract.py fails when an operation registered on the API has no row here, and
derives the bad-input cases (wrong types, missing and unknown fields, bad query parameters) from
the OpenAPI document, so a new endpoint is covered by adding its row.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.audit.services import audit_record
from jingwei.customers import services as customers
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import Customer, MergeCandidate, MergeRecord
from jingwei.flows import calendars as flow_calendars
from jingwei.flows import services as flows
from jingwei.flows.models import Instance as FlowInstance
from jingwei.flows.models import ProcessDefinition, ProcessVersion, TaskCandidate, WorkCalendar
from jingwei.flows.models import Task as FlowTask
from jingwei.notify.models import Notification
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
    ):
        build(s)


def _in_a_year() -> str:
    return (timezone.now() + timedelta(days=365)).isoformat()


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    target: Callable[[Side], dict[str, int]] | None = None
    body: Callable[[Side], dict[str, Any]] | None = None
    body_refs: dict[str, Callable[[Side], int]] = field(default_factory=dict)
    rows: Callable[[Side], QuerySet[Any]] | None = None
    shows: Callable[[Side], dict[str, Any]] | None = None
    query_refs: dict[str, Callable[[Side], Any]] = field(default_factory=dict)
    public: bool = False

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
]

BY_KEY: dict[tuple[str, str], Endpoint] = {ep.key: ep for ep in ENDPOINTS}
assert len(BY_KEY) == len(ENDPOINTS), "an endpoint is listed twice"
