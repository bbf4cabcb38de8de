"""Employees: create, edit, leave, unfreeze, export."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from jingwei.audit.services import audit_record, export_guard, snapshot
from jingwei.core.errors import Conflict, DomainError, Forbidden, NotFound
from jingwei.core.exports import csv_document
from jingwei.core.pii import present_id_number, present_phone
from jingwei.org.models import Employee, EmployeeStatus, RoleAssignment
from jingwei.org.scope import Actor

from .common import MANAGE, check_refs, ensure_may_delegate, ensure_outranks, role_codes

SECURITY = "security.alert"


def employee_get(
    *, actor: Actor, employee_id: int, perm: str = "org.view", lock: bool = False
) -> Employee:
    """An employee the actor may see with `perm`; 404 for everything else, other tenants included.
    With `lock`, the row is locked in the same query that reads it (no stale read-then-lock)."""
    actor.require(perm)
    qs = Employee.objects.visible_to(actor, perm).select_related(
        "department", "region", "manager", "user"
    )
    if lock:
        qs = qs.select_for_update(of=("self",))
    employee = qs.filter(pk=employee_id).first()
    if employee is None:
        raise NotFound("员工不存在", field="id")
    return employee


def _check_manager_chain(employee: Employee, manager_id: int | None) -> None:
    """A manager may not be the employee or anyone who reports to them (directly or not)."""
    seen: set[int] = set()
    current = manager_id
    while current is not None and current not in seen:
        if current == employee.pk:
            raise DomainError("上级不能是本人或其下属", code="manager_cycle", field="manager_id")
        seen.add(current)
        current = (
            Employee.objects.filter(tenant_id=employee.tenant_id, pk=current)
            .values_list("manager_id", flat=True)
            .first()
        )


def employee_create(
    *, actor: Actor, username: str, password: str, employee_no: str, name: str, **fields: Any
) -> Employee:
    actor.require(MANAGE)
    user_model = get_user_model()
    with transaction.atomic(durable=True):
        check_refs(actor.tenant_id, fields)
        try:
            validate_password(password)
        except DjangoValidationError as exc:
            raise DomainError(
                "；".join(exc.messages), code="weak_password", field="password"
            ) from exc
        try:
            # Savepoints: a concurrent create of the same login or number is a 409, not a 500.
            with transaction.atomic():
                if user_model.objects.filter(username=username).exists():
                    raise IntegrityError("username")
                user = user_model.objects.create_user(username=username, password=password)
        except IntegrityError:
            raise Conflict("登录名已被使用", code="username_taken", field="username") from None
        try:
            with transaction.atomic():
                employee = Employee.objects.create(
                    tenant_id=actor.tenant_id,
                    user=user,
                    employee_no=employee_no,
                    name=name,
                    **fields,
                )
        except IntegrityError:
            raise Conflict("工号已存在", code="employee_no_taken", field="employee_no") from None
        if not Employee.objects.visible_to(actor, MANAGE).filter(pk=employee.pk).exists():
            raise Forbidden("只能在自己的管理范围内新建员工", code="out_of_scope")
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.employee.created",
            subject=employee,
            after=snapshot(employee),
        )
        return employee


def _ensure_grants_follow(actor: Actor, employee: Employee) -> None:
    """Moving someone re-anchors the grants they hold at their own department or region: the mover
    must be able to grant those at the new place (else moving yourself would widen your reach)."""
    for a in RoleAssignment.objects.in_force().filter(
        tenant_id=employee.tenant_id, employee_id=employee.pk
    ):
        own_anchor = (a.scope == "department" and a.department_id is None) or (
            a.scope == "region" and a.region_id is None
        )
        if own_anchor:
            ensure_may_delegate(
                actor,
                employee=employee,
                codes=role_codes(a.role_id),
                scope=a.scope,
                department_id=None,
                region_id=None,
                expires_at=a.expires_at,
            )


def employee_update(*, actor: Actor, employee_id: int, changes: dict[str, Any]) -> Employee:
    actor.require(MANAGE)
    with transaction.atomic(durable=True):
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE, lock=True)
        ensure_outranks(actor, employee)
        check_refs(actor.tenant_id, changes)
        if "manager_id" in changes:
            _check_manager_chain(employee, changes["manager_id"])
        before = snapshot(employee)
        for key, value in changes.items():
            setattr(employee, key, value)
        if {"department_id", "region_id"} & changes.keys():
            _ensure_grants_follow(actor, employee)
        employee.save(update_fields=[*changes, "updated_at"])
        # Re-check after writing: an edit must not move the row out of the editor's own scope.
        if not Employee.objects.visible_to(actor, MANAGE).filter(pk=employee.pk).exists():
            raise NotFound("修改后该员工将不在您的管理范围内", code="out_of_scope")
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.employee.updated",
            subject=employee,
            before=before,
            after=snapshot(employee),
        )
        return employee


def employee_leave(*, actor: Actor, employee_id: int, reason: str) -> Employee:
    """Mark an employee as left: they can no longer sign in and their tokens stop working.
    (Handing over their customers is the customers module's 离职继承.)"""
    actor.require(MANAGE)
    with transaction.atomic(durable=True):
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE, lock=True)
        if employee.status == EmployeeStatus.LEFT:
            raise Conflict("该员工已离职", code="already_left")
        ensure_outranks(actor, employee)
        before = snapshot(employee, ["status", "left_at"])
        employee.status = EmployeeStatus.LEFT
        employee.left_at = timezone.now()
        employee.save(update_fields=["status", "left_at", "updated_at"])
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.employee.left",
            subject=employee,
            before=before,
            after=snapshot(employee, ["status", "left_at"]),
            data={"reason": reason},
        )
        return employee


def employee_unfreeze(*, actor: Actor, employee_id: int, reason: str) -> Employee:
    """Lift a security freeze: needs both org.manage and security.alert (the people who were told)."""
    actor.require(MANAGE)
    actor.require(SECURITY)
    with transaction.atomic(durable=True):
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE, lock=True)
        if employee.frozen_at is None:
            raise Conflict("该账号未被冻结", code="not_frozen")
        ensure_outranks(actor, employee)
        before = snapshot(employee, ["frozen_at", "frozen_reason"])
        employee.frozen_at = None
        employee.frozen_reason = ""
        employee.save(update_fields=["frozen_at", "frozen_reason", "updated_at"])
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="security.account_unfrozen",
            subject=employee,
            before=before,
            after=snapshot(employee, ["frozen_at", "frozen_reason"]),
            data={"reason": reason},
        )
        return employee


EXPORT_COLUMNS = ["工号", "姓名", "部门", "区域", "职位", "手机号", "邮箱", "证件号", "状态"]


def employees_export_csv(*, actor: Actor, where: Q | None = None) -> str:
    """The employees the actor may export, as CSV for Excel.

    Counted by the export guard first: past the threshold the export is refused and the account frozen.
    """
    actor.require("org.export")
    rows = list(
        Employee.objects.visible_to(actor, "org.export")
        .filter(where or Q())
        .select_related("department", "region")
    )
    export_guard(actor=actor, kind="org.employees", rows=len(rows))
    return csv_document(
        EXPORT_COLUMNS,
        (
            [
                e.employee_no,
                e.name,
                e.department.name if e.department else "",
                e.region.name if e.region else "",
                e.title,
                present_phone(e.phone, actor),
                e.email,
                present_id_number(e.id_number, actor),
                e.get_status_display(),
            ]
            for e in rows
        ),
    )
