"""Org services called for real: trees keep their paths through creates and moves, refused
writes change nothing, grants start and stop, every write is audited, and only org.manage writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Conflict, DomainError, Forbidden, NotFound
from jingwei.core.models import Timer, TimerStatus
from jingwei.org import services
from jingwei.org.models import Department, Employee, Region, Role, RoleAssignment
from jingwei.org.permissions import PERMISSIONS
from jingwei.org.scope import Actor, actor_for

from ..conftest import Org
from ..factories import EmployeeFactory, grant, make_role

pytestmark = pytest.mark.django_db


def tree(model: type[Department] | type[Region], org: Org) -> dict[str, tuple[int | None, str]]:
    """name -> (parent id, path) for every node of the tenant, read fresh from the database."""
    return {n.name: (n.parent_id, n.path) for n in model.objects.filter(tenant=org.tenant)}


def visible_names(employee: Employee, code: str = "org.view") -> set[str]:
    actor = actor_for(employee)
    return set(Employee.objects.visible_to(actor, code).values_list("name", flat=True))


def events(action: str, subject: Any) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            action=action,
            subject_type=subject._meta.label_lower,
            subject_id=str(subject.pk),
        )
    )


@pytest.fixture
def actor(admin: Employee) -> Actor:
    return actor_for(admin)


@pytest.fixture
def south_manager(org: Org) -> Employee:
    """华南 regional reader."""
    e = EmployeeFactory(tenant=org.tenant, name="李娜", department=org.south_dept, region=org.south)
    grant(e, ["org.view"], "region")
    return e


@pytest.fixture
def east_admin(org: Org) -> Employee:
    """Manages the org, but only within 华东 (and holds what the people there hold)."""
    e = EmployeeFactory(tenant=org.tenant, name="陈静", department=org.east_dept, region=org.east)
    grant(e, ["org.view", "org.manage", "customer.view"], "region")
    return e


# --- trees ---------------------------------------------------------------------------------


def test_created_nodes_carry_their_path_from_the_root(org, actor):
    root = services.tree_node_create(Department, actor=actor, name="研发中心", parent_id=None)
    child = services.tree_node_create(Department, actor=actor, name="平台组", parent_id=root.pk)
    branch = services.tree_node_create(
        Region, actor=actor, name="陆家嘴", parent_id=org.pudong.pk, currency="CNY"
    )

    assert Department.objects.get(pk=root.pk).path == f"/{root.pk}/"
    assert Department.objects.get(pk=child.pk).path == f"/{root.pk}/{child.pk}/"
    stored = Region.objects.get(pk=branch.pk)
    assert stored.path == f"{org.pudong.path}{branch.pk}/"
    assert stored.ancestor_ids() == [org.east.pk, org.shanghai.pk, org.pudong.pk]


def test_a_parent_from_another_tenant_is_refused_naming_the_field(org, other_org, actor):
    with pytest.raises(DomainError) as refused:
        services.tree_node_create(Region, actor=actor, name="越界", parent_id=other_org.east.pk)

    assert (refused.value.code, refused.value.field) == ("invalid_parent", "parent_id")
    assert not Region.objects.filter(name="越界").exists()


def test_moving_a_region_moves_its_subtree_and_what_regional_readers_see(
    org, actor, east_manager, south_manager, shanghai_agent, south_engineer
):
    pudong_engineer = EmployeeFactory(tenant=org.tenant, name="赵磊", region=org.pudong)
    assert {"王芳", "赵磊"} <= visible_names(east_manager)
    assert visible_names(south_manager) == {"李娜", "吴昊"}

    services.tree_node_update(
        Region, actor=actor, node_id=org.shanghai.pk, changes={"parent_id": org.south.pk}
    )

    shanghai, pudong = Region.objects.get(pk=org.shanghai.pk), Region.objects.get(pk=org.pudong.pk)
    assert shanghai.parent_id == org.south.pk
    assert shanghai.path == f"{org.south.path}{shanghai.pk}/"
    assert pudong.path == f"{org.south.path}{shanghai.pk}/{pudong.pk}/"
    assert pudong.parent_id == shanghai.pk
    assert visible_names(east_manager) == {"张伟"}
    assert visible_names(south_manager) == {"李娜", "吴昊", "王芳", pudong_engineer.name}


@pytest.mark.parametrize("target", ["pudong", "shanghai"])
def test_moving_a_node_under_itself_or_its_descendant_is_refused_and_nothing_changes(
    org, actor, target
):
    before = tree(Region, org)

    with pytest.raises(DomainError) as refused:
        services.tree_node_update(
            Region,
            actor=actor,
            node_id=org.shanghai.pk,
            changes={"parent_id": getattr(org, target).pk, "name": "改名"},
        )

    assert (refused.value.code, refused.value.field) == ("tree_cycle", "parent_id")
    assert tree(Region, org) == before
    assert events("org.region.updated", org.shanghai) == []


def test_a_node_with_children_cannot_be_deleted(org, actor):
    with pytest.raises(Conflict) as refused:
        services.tree_node_delete(Region, actor=actor, node_id=org.shanghai.pk)

    assert refused.value.code == "has_children"
    assert Region.objects.filter(pk=org.shanghai.pk).exists()
    assert events("org.region.deleted", org.shanghai) == []


@pytest.mark.parametrize("model", [Department, Region], ids=["department", "region"])
def test_a_node_with_employees_cannot_be_deleted(org, actor, south_engineer, model):
    node = org.south_dept if model is Department else org.guangzhou

    with pytest.raises(Conflict) as refused:
        services.tree_node_delete(model, actor=actor, node_id=node.pk)

    assert refused.value.code == "has_employees"
    assert model.objects.filter(pk=node.pk).exists()


# --- employees -----------------------------------------------------------------------------


def test_an_edit_moving_an_employee_out_of_the_editors_scope_is_refused_and_rolled_back(
    org, east_admin, shanghai_agent
):
    editor = actor_for(east_admin)

    with pytest.raises(NotFound) as refused:
        services.employee_update(
            actor=editor,
            employee_id=shanghai_agent.pk,
            changes={"region_id": org.guangzhou.pk, "title": "调往广州"},
        )

    assert refused.value.code == "out_of_scope"
    stored = Employee.objects.get(pk=shanghai_agent.pk)
    assert (stored.region_id, stored.title) == (org.shanghai.pk, "")
    assert events("org.employee.updated", shanghai_agent) == []


def test_an_edit_within_the_editors_scope_goes_through(org, east_admin, shanghai_agent):
    services.employee_update(
        actor=actor_for(east_admin),
        employee_id=shanghai_agent.pk,
        changes={"region_id": org.pudong.pk},
    )

    assert Employee.objects.get(pk=shanghai_agent.pk).region_id == org.pudong.pk


# --- roles and grants ----------------------------------------------------------------------


def test_creating_a_role_with_an_unknown_permission_is_refused_naming_the_field(org, actor):
    with pytest.raises(DomainError) as refused:
        services.role_create(actor=actor, name="坐席", permissions=["org.view", "org.fly"])

    assert (refused.value.code, refused.value.field) == ("unknown_permission", "permissions")
    assert "org.fly" in refused.value.message
    assert not Role.objects.filter(tenant=org.tenant, name="坐席").exists()


def test_updating_a_role_with_an_unknown_permission_is_refused_and_changes_nothing(org, actor):
    role = make_role(org.tenant, "坐席", ["org.view"])

    with pytest.raises(DomainError) as refused:
        services.role_update(
            actor=actor,
            role_id=role.pk,
            changes={"name": "高级坐席", "permissions": ["customer.view", "customer.fly"]},
        )

    assert (refused.value.code, refused.value.field) == ("unknown_permission", "permissions")
    role.refresh_from_db()
    assert role.name == "坐席"
    assert list(role.grants.values_list("permission_id", flat=True)) == ["org.view"]
    assert events("org.role.updated", role) == []


@pytest.mark.parametrize(
    ("starts", "expires"),
    [(None, timedelta(minutes=-1)), (timedelta(days=2), timedelta(days=1))],
    ids=["expires-in-the-past", "expires-before-it-starts"],
)
def test_a_grant_that_would_end_before_it_begins_is_refused(
    org, actor, south_engineer, starts, expires
):
    role = make_role(org.tenant, "临时客服", ["customer.view"])
    now = timezone.now()

    with pytest.raises(DomainError) as refused:
        services.assignment_create(
            actor=actor,
            employee_id=south_engineer.pk,
            role_id=role.pk,
            scope="self",
            starts_at=now + starts if starts else None,
            expires_at=now + expires,
        )

    assert (refused.value.code, refused.value.field) == ("invalid_period", "expires_at")
    assert not RoleAssignment.objects.filter(employee=south_engineer).exists()
    assert not Timer.objects.filter(tenant=org.tenant).exists()


def test_a_temporary_grant_holds_until_it_expires(org, actor, south_engineer):
    role = make_role(org.tenant, "临时客服", ["customer.view"])
    expires = timezone.now() + timedelta(days=7)

    services.assignment_create(
        actor=actor,
        employee_id=south_engineer.pk,
        role_id=role.pk,
        scope="region",
        expires_at=expires,
    )

    assert actor_for(south_engineer).has_perm("customer.view")
    assert not actor_for(south_engineer, at=expires).has_perm("customer.view")


def test_revoking_a_grant_stops_it_at_once(org, actor, south_engineer, shanghai_agent):
    role = make_role(org.tenant, "临时客服", ["customer.view"])
    assignment = services.assignment_create(
        actor=actor,
        employee_id=south_engineer.pk,
        role_id=role.pk,
        scope="tenant",
        expires_at=timezone.now() + timedelta(days=7),
    )
    assert "王芳" in visible_names(south_engineer, "customer.view")

    services.assignment_revoke(actor=actor, assignment_id=assignment.pk, reason="任务结束")

    holder = actor_for(south_engineer)
    assert not holder.has_perm("customer.view")
    assert not Employee.objects.visible_to(holder, "customer.view").exists()
    timer = Timer.objects.get(tenant=org.tenant, key=f"assignment:{assignment.pk}")
    assert timer.status == TimerStatus.CANCELLED
    with pytest.raises(NotFound):  # a revoked grant cannot be revoked twice
        services.assignment_revoke(actor=actor, assignment_id=assignment.pk)


# --- every write is audited ----------------------------------------------------------------


@dataclass
class Expect:
    action: str
    subject: Any
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _create_department(org: Org, actor: Actor) -> Expect:
    node = services.tree_node_create(Department, actor=actor, name="研发中心", parent_id=None)
    return Expect("org.department.created", node, None, {"name": "研发中心", "path": node.path})


def _rename_region(org: Org, actor: Actor) -> Expect:
    services.tree_node_update(
        Region, actor=actor, node_id=org.pudong.pk, changes={"name": "浦东新区"}
    )
    return Expect("org.region.updated", org.pudong, {"name": "浦东"}, {"name": "浦东新区"})


def _move_region(org: Org, actor: Actor) -> Expect:
    services.tree_node_update(
        Region, actor=actor, node_id=org.pudong.pk, changes={"parent_id": org.south.pk}
    )
    return Expect(
        "org.region.updated",
        org.pudong,
        {"parent_id": org.shanghai.pk, "path": org.pudong.path},
        {"parent_id": org.south.pk, "path": f"{org.south.path}{org.pudong.pk}/"},
    )


def _delete_region(org: Org, actor: Actor) -> Expect:
    services.tree_node_delete(Region, actor=actor, node_id=org.pudong.pk)
    return Expect("org.region.deleted", org.pudong, {"name": "浦东"}, None)


def _update_employee(org: Org, actor: Actor) -> Expect:
    target = EmployeeFactory(tenant=org.tenant, region=org.shanghai)
    services.employee_update(actor=actor, employee_id=target.pk, changes={"region_id": org.east.pk})
    return Expect(
        "org.employee.updated", target, {"region_id": org.shanghai.pk}, {"region_id": org.east.pk}
    )


def _create_role(org: Org, actor: Actor) -> Expect:
    role = services.role_create(actor=actor, name="坐席", permissions=["org.view", "ticket.view"])
    return Expect(
        "org.role.created", role, None, {"name": "坐席", "permissions": ["org.view", "ticket.view"]}
    )


def _update_role(org: Org, actor: Actor) -> Expect:
    role = make_role(org.tenant, "坐席", ["org.view"])
    services.role_update(actor=actor, role_id=role.pk, changes={"permissions": ["ticket.view"]})
    return Expect(
        "org.role.updated", role, {"permissions": ["org.view"]}, {"permissions": ["ticket.view"]}
    )


def _create_assignment(org: Org, actor: Actor) -> Expect:
    target = EmployeeFactory(tenant=org.tenant)
    role = make_role(org.tenant, "坐席", ["org.view"])
    assignment = services.assignment_create(
        actor=actor, employee_id=target.pk, role_id=role.pk, scope="region", region_id=org.east.pk
    )
    return Expect(
        "org.assignment.created",
        assignment,
        None,
        {"employee_id": target.pk, "role_id": role.pk, "scope": "region", "region_id": org.east.pk},
    )


def _create_temporary_grant(org: Org, actor: Actor) -> Expect:
    target = EmployeeFactory(tenant=org.tenant)
    role = make_role(org.tenant, "坐席", ["org.view"])
    assignment = services.assignment_create(
        actor=actor,
        employee_id=target.pk,
        role_id=role.pk,
        scope="self",
        expires_at=timezone.now() + timedelta(hours=4),
        reason="代班",
    )
    return Expect(
        "org.grant.created", assignment, None, {"employee_id": target.pk, "reason": "代班"}
    )


def _revoke_assignment(org: Org, actor: Actor) -> Expect:
    target = EmployeeFactory(tenant=org.tenant)
    assignment = grant(target, ["org.view"], "self")
    services.assignment_revoke(actor=actor, assignment_id=assignment.pk)
    revoked_at = RoleAssignment.objects.get(pk=assignment.pk).revoked_at
    assert revoked_at is not None
    return Expect(
        "org.assignment.revoked",
        assignment,
        {"revoked_at": None},
        {"revoked_at": revoked_at.isoformat()},
    )


AUDITED_WRITES: dict[str, Callable[[Org, Actor], Expect]] = {
    "create department": _create_department,
    "rename region": _rename_region,
    "move region": _move_region,
    "delete region": _delete_region,
    "update employee": _update_employee,
    "create role": _create_role,
    "update role": _update_role,
    "create assignment": _create_assignment,
    "create temporary grant": _create_temporary_grant,
    "revoke assignment": _revoke_assignment,
}


@pytest.mark.parametrize("write", AUDITED_WRITES.values(), ids=AUDITED_WRITES.keys())
def test_every_org_write_records_who_did_what_with_before_and_after(org, admin, actor, write):
    expect = write(org, actor)

    [event] = events(expect.action, expect.subject)
    assert (event.actor_id, event.actor_name) == (admin.pk, "周志远")
    assert event.tenant_id == org.tenant.pk
    for recorded, wanted in ((event.before, expect.before), (event.after, expect.after)):
        if wanted is None:
            assert recorded is None
        else:
            assert recorded is not None
            assert {k: recorded.get(k) for k in wanted} == wanted


# --- only org.manage writes ----------------------------------------------------------------


@dataclass
class Targets:
    org: Org
    employee: Employee
    role: Role
    assignment: RoleAssignment


WRITES: dict[str, Callable[[Actor, Targets], Any]] = {
    "tree_node_create": lambda a, t: services.tree_node_create(
        Department, actor=a, name="越权", parent_id=None
    ),
    "tree_node_update": lambda a, t: services.tree_node_update(
        Region, actor=a, node_id=t.org.pudong.pk, changes={"name": "越权"}
    ),
    "tree_node_delete": lambda a, t: services.tree_node_delete(
        Region, actor=a, node_id=t.org.pudong.pk
    ),
    "employee_create": lambda a, t: services.employee_create(
        actor=a, username="intruder", password="Long-enough-pass-9", employee_no="X1", name="越权"
    ),
    "employee_update": lambda a, t: services.employee_update(
        actor=a, employee_id=t.employee.pk, changes={"title": "越权"}
    ),
    "employee_leave": lambda a, t: services.employee_leave(
        actor=a, employee_id=t.employee.pk, reason="越权"
    ),
    "employee_unfreeze": lambda a, t: services.employee_unfreeze(
        actor=a, employee_id=t.employee.pk, reason="越权"
    ),
    "role_create": lambda a, t: services.role_create(actor=a, name="越权", permissions=[]),
    "role_update": lambda a, t: services.role_update(
        actor=a, role_id=t.role.pk, changes={"permissions": sorted(PERMISSIONS)}
    ),
    "role_delete": lambda a, t: services.role_delete(actor=a, role_id=t.role.pk),
    "assignment_create": lambda a, t: services.assignment_create(
        actor=a, employee_id=t.employee.pk, role_id=t.role.pk, scope="tenant"
    ),
    "assignment_revoke": lambda a, t: services.assignment_revoke(
        actor=a, assignment_id=t.assignment.pk
    ),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_every_org_write_is_forbidden_without_org_manage(org, south_engineer, write):
    # Everything but org.manage, over the whole tenant.
    everything_else = EmployeeFactory(tenant=org.tenant, name="审计员", department=org.hq)
    grant(everything_else, sorted(set(PERMISSIONS) - {"org.manage"}), "tenant")
    role = make_role(org.tenant, "坐席", ["org.view"])
    south_engineer.frozen_at = timezone.now()
    south_engineer.save()
    targets = Targets(org, south_engineer, role, grant(south_engineer, ["customer.view"], "self"))
    audit_rows = AuditEvent.objects.count()

    with pytest.raises(Forbidden) as refused:
        write(actor_for(everything_else), targets)

    assert refused.value.code == "permission_denied"
    assert AuditEvent.objects.count() == audit_rows
    assert tree(Region, org)["浦东"][1] == org.pudong.path
    assert not Employee.objects.filter(name="越权").exists()
    assert Employee.objects.get(pk=south_engineer.pk).status == "active"


def test_another_tenants_admin_finds_none_of_our_nodes_or_people(org, other_admin, shanghai_agent):
    intruder = actor_for(other_admin)

    with pytest.raises(NotFound):
        services.tree_node_update(
            Region, actor=intruder, node_id=org.pudong.pk, changes={"name": "越界"}
        )
    with pytest.raises(NotFound):
        services.employee_update(
            actor=intruder, employee_id=shanghai_agent.pk, changes={"title": "越界"}
        )

    assert Region.objects.get(pk=org.pudong.pk).name == "浦东"
    assert Employee.objects.get(pk=shanghai_agent.pk).title == ""
