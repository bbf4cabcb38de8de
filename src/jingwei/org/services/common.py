"""Shared by the org services: constants, the permission catalogue, and the delegation rules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import models

from jingwei.core.errors import DomainError, Forbidden
from jingwei.org.models import (
    Department,
    Employee,
    EmployeeStatus,
    Permission,
    Region,
    RoleAssignment,
    RolePermission,
)
from jingwei.org.permissions import PERMISSIONS
from jingwei.org.scope import Actor

MANAGE = "org.manage"
GRANT_EXPIRY_TIMER = "org.grant_expired"

# The org rows other modules refer to by id, by the field name they use for them.
REFERENCES: dict[str, type[models.Model]] = {
    "department_id": Department,
    "region_id": Region,
    "manager_id": Employee,
    "owner_id": Employee,
}


def check_refs(tenant_id: int, data: Mapping[str, Any]) -> None:
    """Every department, region or person `data` refers to (by the field names in REFERENCES, and
    `collaborator_ids` as a list of people; None means none) exists in the tenant: another
    tenant's id reads as missing."""
    for field, value in data.items():
        model = REFERENCES.get(field)
        if model is None or value is None:
            continue
        if not model._default_manager.filter(tenant_id=tenant_id, pk=value).exists():
            raise DomainError(
                f"{model._meta.verbose_name}不存在", code="invalid_reference", field=field
            )
    wanted = set(data.get("collaborator_ids") or ())
    if wanted:
        found = set(
            Employee.objects.filter(tenant_id=tenant_id, pk__in=wanted).values_list("pk", flat=True)
        )
        if found != wanted:
            raise DomainError("协作人不存在", code="invalid_reference", field="collaborator_ids")


def permission_catalogue_sync() -> None:
    """Make the Permission table match the catalogue in code (runs after every migrate)."""
    for code, label in PERMISSIONS.items():
        Permission.objects.update_or_create(code=code, defaults={"label": label})


def employees_holding(*, tenant_id: int, code: str, at: datetime | None = None) -> list[int]:
    """Ids of active employees holding `code` through an assignment in force."""
    role_ids = RolePermission.objects.filter(tenant_id=tenant_id, permission_id=code).values(
        "role_id"
    )
    return sorted(
        set(
            RoleAssignment.objects.in_force(at)
            .filter(
                tenant_id=tenant_id, role_id__in=role_ids, employee__status=EmployeeStatus.ACTIVE
            )
            .values_list("employee_id", flat=True)
        )
    )


def role_holders_covering(
    *, tenant_id: int, role_name: str, path: str | None, scope: str = "region"
) -> list[int]:
    """Active, unfrozen holders of role `role_name` whose region (or department, by `scope`)
    covers the node at materialised `path`: a dispatcher of 上海 covers 浦东; one of 广州 does not.
    No path: every holder. A holder placed nowhere (HQ staff): every path."""
    rows = (
        RoleAssignment.objects.in_force()
        .filter(
            tenant_id=tenant_id,
            role__name=role_name,
            employee__status=EmployeeStatus.ACTIVE,
            employee__frozen_at__isnull=True,
        )
        .values_list("employee_id", "employee__region__path", "employee__department__path")
    )
    people = set()
    for employee_id, region_path, department_path in rows:
        own = department_path if scope == "department" else region_path
        if path is None or not own or path.startswith(own):
            people.add(employee_id)
    return sorted(people)


def role_codes(role_id: int) -> list[str]:
    return sorted(
        RolePermission.objects.filter(role_id=role_id).values_list("permission_id", flat=True)
    )


def ensure_may_delegate(
    actor: Actor,
    *,
    employee: Employee,
    codes: list[str],
    scope: str,
    department_id: int | None,
    region_id: int | None,
    expires_at: datetime | None,
) -> None:
    """Nobody hands out more than they hold: `org.manage` and every code, at a reach and for a time
    no wider than the actor's own grants. The anchor defaults to the employee's own department and
    region (as `actor_for` resolves it), so pass the employee as they will be."""
    department_pk = department_id or employee.department_id
    region_pk = region_id or employee.region_id
    department = Department.objects.filter(pk=department_pk).first() if department_pk else None
    region = Region.objects.filter(pk=region_pk).first() if region_pk else None
    beyond = [
        code
        for code in [MANAGE, *codes]
        if not actor.reaches(
            code,
            scope=scope,
            department_path=department.path if department else None,
            region_path=region.path if region else None,
            until=expires_at,
        )
    ]
    if beyond:
        raise Forbidden(
            f"不能授予或管理超出自己权限、范围或期限的授权：{', '.join(beyond)}",
            code="grant_exceeds_own",
            field="role_id",
        )


def ensure_outranks(actor: Actor, employee: Employee) -> None:
    """The actor may manage `employee` only if they could have granted everything the employee
    holds now: a regional manager cannot edit, freeze or dismiss the company's administrator."""
    for a in RoleAssignment.objects.in_force().filter(
        tenant_id=employee.tenant_id, employee_id=employee.pk
    ):
        ensure_may_delegate(
            actor,
            employee=employee,
            codes=role_codes(a.role_id),
            scope=a.scope,
            department_id=a.department_id,
            region_id=a.region_id,
            expires_at=a.expires_at,
        )
