"""Who may do what, and on which rows: the actor, the permission check and the data-scope filter.

`Actor.has_perm(code)` answers "may this person do this at all"; `apply_scope(qs, actor, code)`
narrows a queryset to the rows the actor's grants of `code` reach. Every service and view uses
these two; nothing else decides visibility.

Scopes, for a grant of a permission:
- tenant: every row of the tenant;
- region: rows whose region lies in the anchor region's subtree;
- department: rows whose department lies in the anchor department's subtree;
- self: rows the actor owns.
Every scope includes the rows the actor owns. A model without a region (or department) field
gains nothing from a region (department) grant beyond those. A model that declares no scope
fields is tenant-wide reference data: any grant of the permission shows all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from django.db.models import Q, QuerySet
from django.utils import timezone

from jingwei.core.errors import Forbidden

if TYPE_CHECKING:
    from .models import Employee

Q_NONE = Q(pk__in=[])
_QS = TypeVar("_QS", bound=QuerySet[Any])


@dataclass(frozen=True)
class ScopeFields:
    """Which fields of a model carry its owner (an employee id), department and region."""

    owner: str | None = None
    department: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Grant:
    """One permission code held at one scope, anchored at a department or region path."""

    code: str
    scope: str
    department_path: str | None = None
    region_path: str | None = None
    expires_at: datetime | None = None


@dataclass
class Actor:
    """The person acting, as services see them. Built once per request (or task) by `actor_for`."""

    tenant_id: int
    employee_id: int
    user_id: int
    name: str
    grants: list[Grant] = field(default_factory=list)
    via_token: bool = False  # authenticated by a personal API token rather than a session

    @cached_property
    def codes(self) -> frozenset[str]:
        return frozenset(g.code for g in self.grants)

    def has_perm(self, code: str) -> bool:
        return code in self.codes

    def require(self, code: str) -> None:
        """Raise 403 unless the actor holds `code` at some scope."""
        if not self.has_perm(code):
            from .permissions import PERMISSIONS

            raise Forbidden(
                f"没有权限：{PERMISSIONS.get(code, code)}（{code}）", code="permission_denied"
            )

    def require_tenant_wide(self, code: str) -> None:
        """Raise 403 unless the actor holds `code` for the whole tenant (structure-changing writes)."""
        self.require(code)
        if not any(g.scope == "tenant" for g in self.grants_of(code)):
            raise Forbidden("此操作需要全公司范围的权限", code="scope_too_narrow")

    def reaches(
        self,
        code: str,
        *,
        scope: str,
        department_path: str | None,
        region_path: str | None,
        until: datetime | None,
    ) -> bool:
        """Whether the actor's own grants of `code` cover a grant of `scope` anchored at these paths
        and lasting `until` (None: for good). Nobody hands out more, or longer, than they hold."""
        wanted = region_path if scope == "region" else department_path
        for g in self.grants_of(code):
            if g.expires_at is not None and (until is None or until > g.expires_at):
                continue
            if g.scope == "tenant" or scope == "self":
                return True
            held = g.region_path if g.scope == "region" else g.department_path
            if g.scope == scope and held and wanted and wanted.startswith(held):
                return True
        return False

    def grants_of(self, code: str) -> list[Grant]:
        return [g for g in self.grants if g.code == code]


def actor_for(employee: Employee, *, at: Any = None) -> Actor:
    """The actor for an employee, with every grant in force at `at` (default now)."""
    from .models import RoleAssignment, RolePermission

    at = at or timezone.now()
    assignments = list(
        RoleAssignment.objects.in_force(at)
        .filter(tenant_id=employee.tenant_id, employee_id=employee.pk)
        .select_related("department", "region")
    )
    codes_by_role: dict[int, list[str]] = {}
    for role_id, code in RolePermission.objects.filter(
        tenant_id=employee.tenant_id, role_id__in={a.role_id for a in assignments}
    ).values_list("role_id", "permission_id"):
        codes_by_role.setdefault(role_id, []).append(code)

    own_department = employee.department.path if employee.department is not None else None
    own_region = employee.region.path if employee.region is not None else None
    grants = []
    for a in assignments:
        department_path = a.department.path if a.department is not None else own_department
        region_path = a.region.path if a.region is not None else own_region
        for code in codes_by_role.get(a.role_id, []):
            grants.append(Grant(code, a.scope, department_path, region_path, a.expires_at))
    return Actor(
        tenant_id=employee.tenant_id,
        employee_id=employee.pk,
        user_id=employee.user_id,
        name=employee.name,
        grants=grants,
    )


def scope_q(model: type[Any], actor: Actor, code: str) -> Q:
    """The filter a queryset of `model` gets for the actor's grants of `code` (Q_NONE if none)."""
    grants = actor.grants_of(code)
    if not grants:
        return Q_NONE
    fields: ScopeFields | None = getattr(model, "scope_fields", None)
    if fields is None or any(g.scope == "tenant" for g in grants):
        return Q()
    q = Q_NONE
    if fields.owner:
        q |= Q(**{fields.owner: actor.employee_id})
    for g in grants:
        if g.scope == "region" and fields.region and g.region_path:
            q |= Q(**{f"{fields.region}__path__startswith": g.region_path})
        elif g.scope == "department" and fields.department and g.department_path:
            q |= Q(**{f"{fields.department}__path__startswith": g.department_path})
    return q


def apply_scope(queryset: _QS, actor: Actor, code: str) -> _QS:
    """Narrow `queryset` (already filtered to the actor's tenant) to what `code` lets the actor see."""
    return queryset.filter(scope_q(queryset.model, actor, code))
