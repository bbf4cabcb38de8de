"""Nobody hands out more than they hold: a regional administrator manages their region's people,
but cannot restructure the company, edit roles, or grant wider reach than their own."""

from __future__ import annotations

import pytest

from jingwei.core.errors import DomainError, Forbidden
from jingwei.org import services
from jingwei.org.models import Department, Employee, Role, RoleAssignment
from jingwei.org.permissions import PERMISSIONS

from ..factories import EmployeeFactory, grant, make_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def east_admin(org):
    """Manages people in 华东 only."""
    e = EmployeeFactory(
        tenant=org.tenant, name="华东管理员", department=org.east_dept, region=org.east
    )
    grant(e, ["org.manage", "org.view", "ticket.view"], "region")
    return e


def test_regional_admin_cannot_restructure_the_company(org, east_admin, actor_of):
    actor = actor_of(east_admin)

    with pytest.raises(Forbidden) as exc:
        services.tree_node_create(Department, actor=actor, name="新部门", parent_id=None)

    assert exc.value.code == "scope_too_narrow"
    assert not Department.objects.filter(name="新部门").exists()


def test_regional_admin_cannot_edit_roles(org, east_admin, actor_of):
    role = Role.objects.filter(tenant=org.tenant).first()

    with pytest.raises(Forbidden):
        services.role_update(
            actor=actor_of(east_admin),
            role_id=role.pk,
            changes={"permissions": sorted(PERMISSIONS)},
        )


def test_regional_admin_cannot_make_anyone_a_company_wide_admin(
    org, east_admin, shanghai_agent, actor_of
):
    big = make_role(org.tenant, "超级角色", ["org.manage", "settlement.approve"])

    with pytest.raises(Forbidden) as exc:
        services.assignment_create(
            actor=actor_of(east_admin), employee_id=east_admin.pk, role_id=big.pk, scope="tenant"
        )

    assert exc.value.code == "grant_exceeds_own"
    assert not RoleAssignment.objects.filter(role=big).exists()


def test_regional_admin_cannot_grant_a_permission_they_lack(
    org, east_admin, shanghai_agent, actor_of
):
    role = make_role(org.tenant, "结算审批", ["settlement.approve"])

    with pytest.raises(Forbidden):
        services.assignment_create(
            actor=actor_of(east_admin), employee_id=shanghai_agent.pk, role_id=role.pk, scope="self"
        )


def test_regional_admin_grants_within_their_region(org, east_admin, shanghai_agent, actor_of):
    role = make_role(org.tenant, "查看工单", ["ticket.view"])

    assignment = services.assignment_create(
        actor=actor_of(east_admin), employee_id=shanghai_agent.pk, role_id=role.pk, scope="region"
    )

    assert assignment.scope == "region"
    assert actor_of(shanghai_agent).has_perm("ticket.view")


def test_regional_admin_cannot_anchor_a_grant_in_another_region(
    org, east_admin, shanghai_agent, actor_of
):
    role = make_role(org.tenant, "查看工单", ["ticket.view"])

    with pytest.raises(Forbidden):
        services.assignment_create(
            actor=actor_of(east_admin),
            employee_id=shanghai_agent.pk,
            role_id=role.pk,
            scope="region",
            region_id=org.south.pk,
        )


def test_regional_admin_cannot_create_employees_outside_their_region(org, east_admin, actor_of):
    with pytest.raises(Forbidden):
        services.employee_create(
            actor=actor_of(east_admin),
            username="outsider",
            password="Long-enough-42",
            employee_no="X1",
            name="华南新人",
            region_id=org.guangzhou.pk,
        )

    assert not Employee.objects.filter(employee_no="X1").exists()


def test_moving_yourself_does_not_widen_your_reach(org, east_admin, actor_of):
    with pytest.raises(Forbidden):
        services.employee_update(
            actor=actor_of(east_admin),
            employee_id=east_admin.pk,
            changes={"region_id": org.south.pk},
        )

    east_admin.refresh_from_db()
    assert east_admin.region_id == org.east.pk


def test_a_company_wide_manager_cannot_add_to_a_role_what_they_lack(org, actor_of):
    hr = EmployeeFactory(tenant=org.tenant, department=org.hq)
    assignment = grant(hr, ["org.manage", "org.view"], "tenant")

    with pytest.raises(Forbidden) as exc:
        services.role_update(
            actor=actor_of(hr),
            role_id=assignment.role_id,
            changes={"permissions": ["org.manage", "org.view", "settlement.pay"]},
        )

    assert exc.value.code == "grant_exceeds_own"
    assert not actor_of(hr).has_perm("settlement.pay")


def test_a_temporary_grant_cannot_be_made_permanent_by_its_holder(org, actor_of):
    from datetime import timedelta

    from django.utils import timezone

    temp = EmployeeFactory(tenant=org.tenant, department=org.hq)
    assignment = grant(
        temp, ["org.manage", "org.view"], "tenant", expires_at=timezone.now() + timedelta(hours=1)
    )

    with pytest.raises(Forbidden):
        services.assignment_create(
            actor=actor_of(temp), employee_id=temp.pk, role_id=assignment.role_id, scope="tenant"
        )

    within = services.assignment_create(
        actor=actor_of(temp),
        employee_id=temp.pk,
        role_id=assignment.role_id,
        scope="tenant",
        expires_at=timezone.now() + timedelta(minutes=30),
    )
    assert within.expires_at is not None


def test_a_narrower_manager_cannot_dismiss_or_edit_the_company_admin(org, admin, actor_of):
    hq_admin = EmployeeFactory(tenant=org.tenant, department=org.hq)
    grant(hq_admin, ["org.manage", "org.view"], "department")

    with pytest.raises(Forbidden):
        services.employee_leave(actor=actor_of(hq_admin), employee_id=admin.pk, reason="越权")
    with pytest.raises(Forbidden):
        services.employee_update(
            actor=actor_of(hq_admin), employee_id=admin.pk, changes={"email": "x@evil.cn"}
        )
    revocable = RoleAssignment.objects.filter(employee=admin).first()
    with pytest.raises(Forbidden):
        services.assignment_revoke(actor=actor_of(hq_admin), assignment_id=revocable.pk)

    admin.refresh_from_db()
    assert admin.status == "active"
    assert admin.email == ""


def test_a_manager_cannot_report_to_their_own_report(
    org, admin, east_manager, shanghai_agent, actor_of
):
    services.employee_update(
        actor=actor_of(admin),
        employee_id=shanghai_agent.pk,
        changes={"manager_id": east_manager.pk},
    )

    with pytest.raises(DomainError) as exc:
        services.employee_update(
            actor=actor_of(admin),
            employee_id=east_manager.pk,
            changes={"manager_id": shanghai_agent.pk},
        )

    assert exc.value.code == "manager_cycle"


def test_org_trees_stop_at_a_sensible_depth(org, admin, actor_of):
    from jingwei.org.services.trees import MAX_DEPTH

    parent = None
    for level in range(MAX_DEPTH):
        parent = services.tree_node_create(
            Department, actor=actor_of(admin), name=f"L{level}", parent_id=parent and parent.pk
        )

    with pytest.raises(DomainError) as exc:
        services.tree_node_create(
            Department, actor=actor_of(admin), name="太深", parent_id=parent.pk
        )

    assert exc.value.code == "tree_too_deep"
