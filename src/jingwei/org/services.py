"""Org operations: trees, employees, roles and grants. Each top-level service is one transaction,
checks the actor's permission itself, and records an audit event."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, TypeVar, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jingwei.audit.services import audit_record, export_guard, snapshot
from jingwei.core.errors import Conflict, DomainError, Forbidden, NotFound
from jingwei.core.pii import present_id_number, present_phone
from jingwei.core.timers import timer_cancel, timer_schedule

from .models import (
    DataScope,
    Department,
    Employee,
    EmployeeStatus,
    Permission,
    Region,
    Role,
    RoleAssignment,
    RolePermission,
    TreeNode,
)
from .permissions import PERMISSIONS
from .scope import Actor

MANAGE = "org.manage"
GRANT_EXPIRY_TIMER = "org.grant_expired"

_Node = TypeVar("_Node", bound=TreeNode)


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
                tenant_id=tenant_id,
                role_id__in=role_ids,
                employee__status=EmployeeStatus.ACTIVE,
            )
            .values_list("employee_id", flat=True)
        )
    )


# --- trees ---------------------------------------------------------------------------------


def _node(model: type[_Node], actor: Actor, node_id: int, *, lock: bool = False) -> _Node:
    qs = model.objects.filter(tenant_id=actor.tenant_id, pk=node_id)
    if lock:
        qs = qs.select_for_update()
    node = qs.first()
    if node is None:
        raise NotFound(f"{model._meta.verbose_name}不存在", field="id")
    return cast(_Node, node)


def _parent(model: type[_Node], actor: Actor, parent_id: int | None) -> _Node | None:
    if parent_id is None:
        return None
    parent = model.objects.filter(tenant_id=actor.tenant_id, pk=parent_id).first()
    if parent is None:
        raise DomainError(
            f"上级{model._meta.verbose_name}不存在", code="invalid_parent", field="parent_id"
        )
    return cast(_Node, parent)


def tree_node_create(
    model: type[_Node], *, actor: Actor, name: str, parent_id: int | None, **extra: Any
) -> _Node:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        parent = _parent(model, actor, parent_id)
        node = model(tenant_id=actor.tenant_id, name=name, parent=parent, **extra)
        node.save()
        node.save_path()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=f"org.{model._meta.model_name}.created",
            subject=node,
            after=snapshot(node),
        )
        return node


def tree_node_update(
    model: type[_Node], *, actor: Actor, node_id: int, changes: dict[str, Any]
) -> _Node:
    """Rename, re-parent (moving the whole subtree) or change other fields of a node."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        node = _node(model, actor, node_id, lock=True)
        before = snapshot(node)
        if "parent_id" in changes:
            parent = _parent(model, actor, changes.pop("parent_id"))
            if parent is not None and parent.path.startswith(node.path):
                raise DomainError(
                    "不能移动到自己或自己的下级之下", code="tree_cycle", field="parent_id"
                )
            old_path = node.path
            node.parent = parent
            node.path = f"{parent.path if parent else '/'}{node.pk}/"
            if node.path != old_path:
                for child in model.objects.filter(
                    tenant_id=actor.tenant_id, path__startswith=old_path
                ).exclude(pk=node.pk):
                    child.path = node.path + child.path[len(old_path) :]
                    child.save(update_fields=["path"])
        for key, value in changes.items():
            setattr(node, key, value)
        node.save()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=f"org.{model._meta.model_name}.updated",
            subject=node,
            before=before,
            after=snapshot(node),
        )
        return node


def tree_node_delete(model: type[_Node], *, actor: Actor, node_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        node = _node(model, actor, node_id, lock=True)
        # Through QuerySet[Any]: django-stubs cannot resolve "self" relations on the abstract base.
        children: QuerySet[Any] = model.objects.filter(tenant_id=actor.tenant_id)
        if children.filter(parent_id=node.pk).exists():
            raise Conflict(f"{node.name} 还有下级，不能删除", code="has_children")
        if Employee.objects.filter(
            tenant_id=actor.tenant_id, **{f"{model._meta.model_name}_id": node.pk}
        ).exists():
            raise Conflict(f"{node.name} 下还有员工，不能删除", code="has_employees")
        if RoleAssignment.objects.filter(
            tenant_id=actor.tenant_id, **{f"{model._meta.model_name}_id": node.pk}
        ).exists():
            raise Conflict(f"{node.name} 仍被角色授权引用，不能删除", code="in_use")
        before = snapshot(node)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=f"org.{model._meta.model_name}.deleted",
            subject=node,
            before=before,
        )
        node.delete()


# --- employees -----------------------------------------------------------------------------


def employee_get(*, actor: Actor, employee_id: int, perm: str = "org.view") -> Employee:
    """An employee the actor may see with `perm`; 404 for everything else, other tenants included."""
    actor.require(perm)
    employee = (
        Employee.objects.visible_to(actor, perm)
        .select_related("department", "region", "manager", "user")
        .filter(pk=employee_id)
        .first()
    )
    if employee is None:
        raise NotFound("员工不存在", field="id")
    return employee


def _check_refs(actor: Actor, data: dict[str, Any]) -> None:
    """Referenced department, region and manager must exist in the actor's tenant."""
    refs: list[tuple[str, Any]] = [
        ("department_id", Department),
        ("region_id", Region),
        ("manager_id", Employee),
    ]
    for field, model in refs:
        value = data.get(field)
        if (
            value is not None
            and not model.objects.filter(tenant_id=actor.tenant_id, pk=value).exists()
        ):
            raise DomainError(
                f"{model._meta.verbose_name}不存在", code="invalid_reference", field=field
            )


def employee_create(
    *, actor: Actor, username: str, password: str, employee_no: str, name: str, **fields: Any
) -> Employee:
    actor.require(MANAGE)
    user_model = get_user_model()
    with transaction.atomic(durable=True):
        _check_refs(actor, fields)
        if user_model.objects.filter(username=username).exists():
            raise Conflict("登录名已被使用", code="username_taken", field="username")
        if Employee.objects.filter(tenant_id=actor.tenant_id, employee_no=employee_no).exists():
            raise Conflict("工号已存在", code="employee_no_taken", field="employee_no")
        try:
            validate_password(password)
        except DjangoValidationError as exc:
            raise DomainError(
                "；".join(exc.messages), code="weak_password", field="password"
            ) from exc
        user = user_model.objects.create_user(username=username, password=password)
        employee = Employee.objects.create(
            tenant_id=actor.tenant_id, user=user, employee_no=employee_no, name=name, **fields
        )
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


def employee_update(*, actor: Actor, employee_id: int, changes: dict[str, Any]) -> Employee:
    actor.require(MANAGE)
    with transaction.atomic(durable=True):
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE)
        Employee.objects.select_for_update().filter(pk=employee.pk).first()
        _check_refs(actor, changes)
        if changes.get("manager_id") == employee.pk:
            raise DomainError("上级不能是本人", code="invalid_reference", field="manager_id")
        before = snapshot(employee)
        for key, value in changes.items():
            setattr(employee, key, value)
        employee.save()
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
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE)
        if employee.status == EmployeeStatus.LEFT:
            raise Conflict("该员工已离职", code="already_left")
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
    actor.require(MANAGE)
    with transaction.atomic(durable=True):
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE)
        if employee.frozen_at is None:
            raise Conflict("该账号未被冻结", code="not_frozen")
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
    """The employees the actor may export, as CSV (UTF-8 with BOM, so Excel reads the Chinese).

    Counted by the export guard first: past the threshold the export is refused and the account frozen.
    """
    actor.require("org.export")
    rows = list(
        Employee.objects.visible_to(actor, "org.export")
        .filter(where or Q())
        .select_related("department", "region")
    )
    export_guard(actor=actor, kind="org.employees", rows=len(rows))
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for e in rows:
        writer.writerow(
            [
                e.employee_no,
                e.name,
                e.department.name if e.department else "",
                e.region.name if e.region else "",
                e.title,
                present_phone(e.phone, actor) or "",
                e.email,
                present_id_number(e.id_number, actor) or "",
                e.get_status_display(),
            ]
        )
    return out.getvalue()


# --- roles and grants ----------------------------------------------------------------------


def _valid_codes(codes: list[str]) -> list[str]:
    unknown = sorted(set(codes) - set(PERMISSIONS))
    if unknown:
        raise DomainError(
            f"未知的权限代码：{', '.join(unknown)}", code="unknown_permission", field="permissions"
        )
    return sorted(set(codes))


def _role(actor: Actor, role_id: int) -> Role:
    role = Role.objects.filter(tenant_id=actor.tenant_id, pk=role_id).first()
    if role is None:
        raise NotFound("角色不存在", field="id")
    return role


def _role_snapshot(role: Role) -> dict[str, Any]:
    return {
        "name": role.name,
        "description": role.description,
        "permissions": sorted(role.grants.values_list("permission_id", flat=True)),
    }


def role_create(*, actor: Actor, name: str, permissions: list[str], description: str = "") -> Role:
    actor.require_tenant_wide(MANAGE)
    codes = _valid_codes(permissions)
    with transaction.atomic(durable=True):
        if Role.objects.filter(tenant_id=actor.tenant_id, name=name).exists():
            raise Conflict("角色名称已存在", code="role_name_taken", field="name")
        role = Role.objects.create(tenant_id=actor.tenant_id, name=name, description=description)
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
        role = _role(actor, role_id)
        before = _role_snapshot(role)
        if "name" in changes and changes["name"] != role.name:
            if Role.objects.filter(tenant_id=actor.tenant_id, name=changes["name"]).exists():
                raise Conflict("角色名称已存在", code="role_name_taken", field="name")
            role.name = changes["name"]
        if "description" in changes:
            role.description = changes["description"]
        role.save()
        if "permissions" in changes:
            codes = _valid_codes(changes["permissions"])
            role.grants.exclude(permission_id__in=codes).delete()
            have = set(role.grants.values_list("permission_id", flat=True))
            RolePermission.objects.bulk_create(
                RolePermission(tenant_id=actor.tenant_id, role=role, permission_id=c)
                for c in codes
                if c not in have
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
        role = _role(actor, role_id)
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


def _ensure_may_delegate(
    actor: Actor,
    employee: Employee,
    role: Role,
    scope: str,
    department_id: int | None,
    region_id: int | None,
) -> None:
    """Nobody hands out more than they hold: every permission of the role, at a reach no wider
    than the granter's own grants of that permission (and of org.manage)."""
    department_pk = department_id or employee.department_id
    region_pk = region_id or employee.region_id
    department = Department.objects.filter(pk=department_pk).first() if department_pk else None
    region = Region.objects.filter(pk=region_pk).first() if region_pk else None
    paths = {
        "department_path": department.path if department else None,
        "region_path": region.path if region else None,
    }
    codes = sorted(role.grants.values_list("permission_id", flat=True))
    beyond = [c for c in [MANAGE, *codes] if not actor.reaches(c, scope=scope, **paths)]
    if beyond:
        raise Forbidden(
            f"不能授予超出自己权限或范围的授权：{', '.join(beyond)}",
            code="grant_exceeds_own",
            field="role_id",
        )


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
    if expires_at is not None and expires_at <= (starts_at or timezone.now()):
        raise DomainError(
            "到期时间必须晚于生效时间和当前时间", code="invalid_period", field="expires_at"
        )
    with transaction.atomic(durable=True):
        employee = employee_get(actor=actor, employee_id=employee_id, perm=MANAGE)
        role = _role(actor, role_id)
        _check_refs(actor, {"department_id": department_id, "region_id": region_id})
        _ensure_may_delegate(actor, employee, role, scope, department_id, region_id)
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
