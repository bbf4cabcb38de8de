"""Nobody hands out more than they hold: a regional administrator manages their region's people,
but cannot restructure the company, edit roles, or grant wider reach than their own."""

from __future__ import annotations

import pytest

from jingwei.core.errors import Forbidden
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
