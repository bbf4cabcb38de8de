"""Roles and grants: named permission sets, assignments with a data scope, temporary grants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jingwei.audit.services import audit_record, snapshot
from jingwei.core.errors import Conflict, DomainError, Forbidden, NotFound
from jingwei.core.timers import timer_cancel, timer_schedule
from jingwei.org.models import DataScope, Employee, Role, RoleAssignment, RolePermission
from jingwei.org.permissions import PERMISSIONS
from jingwei.org.scope import Actor

from .common import GRANT_EXPIRY_TIMER, MANAGE, check_refs, ensure_may_delegate, role_codes
from .employees import employee_get


def _valid_codes(codes: list[str]) -> list[str]:
    unknown = sorted(set(codes) - set(PERMISSIONS))
    if unknown:
        raise DomainError(
            f"未知的权限代码：{', '.join(unknown)}", code="unknown_permission", field="permissions"
        )
    return sorted(set(codes))


def _ensure_holds_company_wide(actor: Actor, codes: list[str]) -> None:
    """A role may be given to anyone anywhere, so its editor must hold each code company-wide and
    for good: else editing the role you hold would hand you what you lack."""
    missing = [
        c
        for c in codes
        if not actor.reaches(c, scope="tenant", department_path=None, region_path=None, until=None)
    ]
    if missing:
        raise Forbidden(
            f"角色中不能加入自己未在全公司范围长期持有的权限：{', '.join(missing)}",
            code="grant_exceeds_own",
            field="permissions",
        )


def _role(actor: Actor, role_id: int, *, lock: bool = False) -> Role:
    qs = Role.objects.filter(tenant_id=actor.tenant_id, pk=role_id)
    role = (qs.select_for_update() if lock else qs).first()
    if role is None:
        raise NotFound("角色不存在", field="id")
    return role


def _role_snapshot(role: Role) -> dict[str, Any]:
    return {"name": role.name, "description": role.description, "permissions": role_codes(role.pk)}


def _name_taken() -> Conflict:
    return Conflict("角色名称已存在", code="role_name_taken", field="name")


def role_create(*, actor: Actor, name: str, permissions: list[str], description: str = "") -> Role:
    actor.require_tenant_wide(MANAGE)
    codes = _valid_codes(permissions)
    _ensure_holds_company_wide(actor, codes)
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                role = Role.objects.create(
                    tenant_id=actor.tenant_id, name=name, description=description
                )
        except IntegrityError:
            raise _name_taken() from None
        RolePermission.objects.bulk_create(
            RolePermission(tenant_id=actor.tenant_id, role=role, permission_id=c) for c in codes
        )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.role.created",
            subject=role,
            after=_role_snapshot(role),
        )
        return role


def role_update(*, actor: Actor, role_id: int, changes: dict[str, Any]) -> Role:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        role = _role(actor, role_id, lock=True)
        before = _role_snapshot(role)
        if "permissions" in changes:
            codes = _valid_codes(changes["permissions"])
            _ensure_holds_company_wide(actor, sorted(set(codes) - set(before["permissions"])))
        for key in ("name", "description"):
            if key in changes:
                setattr(role, key, changes[key])
        try:
            with transaction.atomic():
                role.save()
        except IntegrityError:
            raise _name_taken() from None
        if "permissions" in changes:
            role.grants.exclude(permission_id__in=codes).delete()
            RolePermission.objects.bulk_create(
                RolePermission(tenant_id=actor.tenant_id, role=role, permission_id=c)
                for c in codes
                if c not in before["permissions"]
            )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.role.updated",
            subject=role,
            before=before,
            after=_role_snapshot(role),
        )
        return role


def role_delete(*, actor: Actor, role_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        role = _role(actor, role_id, lock=True)
        if role.assignments.filter(revoked_at__isnull=True).exists():
            raise Conflict("该角色仍有授权，不能删除", code="in_use")
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.role.deleted",
            subject=role,
            before=_role_snapshot(role),
        )
        role.assignments.all().delete()
        role.delete()


def assignment_create(
    *,
    actor: Actor,
    employee_id: int,
    role_id: int,
    scope: str,
    department_id: int | None = None,
    region_id: int | None = None,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
    reason: str = "",
) -> RoleAssignment:
    """Give an employee a role at a data scope; with `expires_at`, a temporary grant that stops
    on its own (and a timer records its end in the audit log)."""
    actor.require(MANAGE)
    if scope not in DataScope.values:
        raise DomainError("未知的数据范围", code="invalid_scope", field="scope")
    now = timezone.now()
    if expires_at is not None and expires_at <= max(starts_at or now, now):
        raise DomainError(
            "到期时间必须晚于生效时间和当前时间", code="invalid_period", field="expires_at"
        )
    with transaction.atomic(durable=True):
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE)
        role = _role(actor, role_id)
        check_refs(actor.tenant_id, {"department_id": department_id, "region_id": region_id})
        ensure_may_delegate(
            actor,
            employee=employee,
            codes=role_codes(role.pk),
            scope=scope,
            department_id=department_id,
            region_id=region_id,
            expires_at=expires_at,
        )
        assignment = RoleAssignment.objects.create(
            tenant_id=actor.tenant_id,
            employee=employee,
            role=role,
            scope=scope,
            department_id=department_id,
            region_id=region_id,
            starts_at=starts_at,
            expires_at=expires_at,
            reason=reason,
            granted_by_id=actor.employee_id,
        )
        if expires_at is not None:
            timer_schedule(
                tenant_id=actor.tenant_id,
                kind=GRANT_EXPIRY_TIMER,
                key=f"assignment:{assignment.pk}",
                due_at=expires_at,
                payload={"assignment_id": assignment.pk},
            )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.grant.created" if expires_at else "org.assignment.created",
            subject=assignment,
            after=snapshot(assignment),
        )
        return assignment


def assignment_revoke(*, actor: Actor, assignment_id: int, reason: str = "") -> RoleAssignment:
    """Revoke a grant. Only someone who could have made it may take it away."""
    actor.require(MANAGE)
    with transaction.atomic(durable=True):
        assignment = (
            RoleAssignment.objects.select_for_update()
            .filter(tenant_id=actor.tenant_id, pk=assignment_id, revoked_at__isnull=True)
            .first()
        )
        if (
            assignment is None
            or not Employee.objects.visible_to(actor, MANAGE)
            .filter(pk=assignment.employee_id)
            .exists()
        ):
            raise NotFound("授权不存在", field="id")
        ensure_may_delegate(
            actor,
            employee=assignment.employee,
            codes=role_codes(assignment.role_id),
            scope=assignment.scope,
            department_id=assignment.department_id,
            region_id=assignment.region_id,
            expires_at=assignment.expires_at,
        )
        before = snapshot(assignment)
        assignment.revoked_at = timezone.now()
        assignment.save(update_fields=["revoked_at"])
        timer_cancel(
            tenant_id=actor.tenant_id, kind=GRANT_EXPIRY_TIMER, key=f"assignment:{assignment.pk}"
        )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="org.assignment.revoked",
            subject=assignment,
            before=before,
            after=snapshot(assignment),
            data={"reason": reason},
        )
        return assignment


def grant_expired(*, tenant_id: int, assignment_id: int) -> None:
    """Timer handler body: the grant has already stopped (in_force filters it); record that it did."""
    assignment = RoleAssignment.objects.filter(tenant_id=tenant_id, pk=assignment_id).first()
    if assignment is None or assignment.revoked_at is not None:
        return
    audit_record(
        actor=None,
        tenant_id=tenant_id,
        action="org.grant.expired",
        subject=assignment,
        data={"employee_id": assignment.employee_id, "role_id": assignment.role_id},
    )
