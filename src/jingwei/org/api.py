"""Org API: the tenant, departments, regions, employees, roles and grants. Thin: parse, call a
service, serialise. Reads go through `visible_to`; writes through services."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db.models import Q, QuerySet
from django.http import HttpResponse
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from jingwei.core.api import (
    DB_INT_MAX,
    AuthedRequest,
    Filters,
    In,
    Moment,
    Page,
    Password,
    TimeZoneName,
)
from jingwei.core.errors import Invalid, NotFound
from jingwei.core.pii import MaskedIdNumber, MaskedPhone

from . import services
from .models import (
    DataScope,
    Department,
    Employee,
    EmployeeStatus,
    Permission,
    Region,
    Role,
    RoleAssignment,
    Tenant,
    TreeNode,
)

router = Router(tags=["组织与权限"])

Name = Field(..., min_length=1, max_length=100)


def patch_changes(payload: Schema, *, not_null: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields a PATCH body set, refusing null for fields that cannot be empty."""
    changes = payload.model_dump(exclude_unset=True)
    for name in not_null:
        if name in changes and changes[name] is None:
            raise Invalid(f"{name} 不能为空", code="required", field=name)
    return changes


# --- tenant and permission catalogue -------------------------------------------------------


class TenantOut(Schema):
    id: int
    name: str
    slug: str
    timezone: str


@router.get("/tenant", response=TenantOut, summary="当前企业")
def get_tenant(request: AuthedRequest) -> Tenant:
    return Tenant.objects.get(pk=request.actor.tenant_id)


class PermissionOut(Schema):
    code: str
    label: str


@router.get("/permissions", response=list[PermissionOut], summary="权限代码目录")
def list_permissions(request: AuthedRequest) -> QuerySet[Permission]:
    return Permission.objects.all()


# --- trees ---------------------------------------------------------------------------------


class NodeOut(Schema):
    id: int
    name: str
    parent_id: int | None
    path: str
    sort: int


class RegionOut(NodeOut):
    currency: str
    timezone: str


class DepartmentIn(In):
    name: str = Name
    parent_id: int | None = None
    sort: int = Field(0, ge=-(2**31), le=2**31 - 1)  # an INTEGER column


class DepartmentPatch(In):
    name: str | None = Field(None, min_length=1, max_length=100)
    parent_id: int | None = None
    sort: int | None = Field(None, ge=-(2**31), le=2**31 - 1)


class RegionIn(DepartmentIn):
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")
    timezone: TimeZoneName = "Asia/Shanghai"


class RegionPatch(DepartmentPatch):
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    timezone: TimeZoneName | None = None


def _tree(model: type[TreeNode], request: AuthedRequest) -> QuerySet[Any]:
    request.actor.require("org.view")
    return model.objects.visible_to(request.actor, "org.view").order_by("path")


@router.get("/departments", response=list[NodeOut], summary="部门（树，按路径排序）")
def list_departments(request: AuthedRequest) -> QuerySet[Any]:
    return _tree(Department, request)


@router.post("/departments", response={201: NodeOut}, summary="新建部门")
def create_department(request: AuthedRequest, payload: DepartmentIn) -> Status[Department]:
    data = payload.model_dump()
    return Status(201, services.tree_node_create(Department, actor=request.actor, **data))


@router.patch("/departments/{node_id}", response=NodeOut, summary="修改或移动部门")
def update_department(request: AuthedRequest, node_id: int, payload: DepartmentPatch) -> Department:
    changes = patch_changes(payload, not_null=("name", "sort"))
    return services.tree_node_update(
        Department, actor=request.actor, node_id=node_id, changes=changes
    )


@router.delete("/departments/{node_id}", response={204: None}, summary="删除部门")
def delete_department(request: AuthedRequest, node_id: int) -> Status[None]:
    services.tree_node_delete(Department, actor=request.actor, node_id=node_id)
    return Status(204, None)


@router.get("/regions", response=list[RegionOut], summary="区域（树，按路径排序）")
def list_regions(request: AuthedRequest) -> QuerySet[Any]:
    return _tree(Region, request)


@router.post("/regions", response={201: RegionOut}, summary="新建区域")
def create_region(request: AuthedRequest, payload: RegionIn) -> Status[Region]:
    return Status(
        201, services.tree_node_create(Region, actor=request.actor, **payload.model_dump())
    )


@router.patch("/regions/{node_id}", response=RegionOut, summary="修改或移动区域")
def update_region(request: AuthedRequest, node_id: int, payload: RegionPatch) -> Region:
    changes = patch_changes(payload, not_null=("name", "sort", "currency", "timezone"))
    return services.tree_node_update(Region, actor=request.actor, node_id=node_id, changes=changes)


@router.delete("/regions/{node_id}", response={204: None}, summary="删除区域")
def delete_region(request: AuthedRequest, node_id: int) -> Status[None]:
    services.tree_node_delete(Region, actor=request.actor, node_id=node_id)
    return Status(204, None)


# --- employees -----------------------------------------------------------------------------


class EmployeeOut(Schema):
    id: int
    employee_no: str
    name: str
    username: str = Field(..., alias="user.username")
    phone: MaskedPhone
    email: str
    id_number: MaskedIdNumber
    title: str
    department_id: int | None
    region_id: int | None
    manager_id: int | None
    status: str
    frozen: bool = Field(..., alias="is_frozen")
    frozen_reason: str
    left_at: datetime | None


class EmployeeIn(In):
    username: str = Field(..., min_length=3, max_length=150, pattern=r"^[\w.@+-]+$")
    password: Annotated[Password, Field(min_length=8)]
    employee_no: str = Field(..., min_length=1, max_length=32)
    name: str = Field(..., min_length=1, max_length=50)
    phone: str = Field("", pattern=r"^(\+?\d{5,15})?$")
    email: str = Field("", max_length=254, pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$")
    id_number: str = Field("", max_length=32)
    title: str = Field("", max_length=50)
    department_id: int | None = None
    region_id: int | None = None
    manager_id: int | None = None


class EmployeePatch(In):
    name: str | None = Field(None, min_length=1, max_length=50)
    phone: str | None = Field(None, pattern=r"^(\+?\d{5,15})?$")
    email: str | None = Field(None, max_length=254, pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$")
    id_number: str | None = Field(None, max_length=32)
    title: str | None = Field(None, max_length=50)
    department_id: int | None = None
    region_id: int | None = None
    manager_id: int | None = None


class EmployeeFilters(Filters):
    q: str | None = Field(None, max_length=50, description="姓名或工号包含")
    department_id: int | None = Field(None, description="部门（含下级）")
    region_id: int | None = Field(None, description="区域（含下级）")
    status: Literal["active", "left"] | None = None


class ReasonIn(In):
    reason: str = Field(..., min_length=1, max_length=200)


def _employee_filter(request: AuthedRequest, filters: EmployeeFilters) -> Q:
    q = Q()
    if filters.q:
        q &= Q(name__contains=filters.q) | Q(employee_no__contains=filters.q)
    if filters.status:
        q &= Q(status=filters.status)
    tenant = request.actor.tenant_id
    for field, model in (("department", Department), ("region", Region)):
        node_id = getattr(filters, f"{field}_id")
        if node_id is not None:
            node = model.objects.filter(tenant_id=tenant, pk=node_id).first()
            q &= Q(**{f"{field}__path__startswith": node.path}) if node else Q(pk__in=[])
    return q


@router.get("/employees", response=list[EmployeeOut], summary="员工（按数据范围）")
@paginate(Page)
def list_employees(request: AuthedRequest, filters: Query[EmployeeFilters]) -> QuerySet[Employee]:
    request.actor.require("org.view")
    return (
        Employee.objects.visible_to(request.actor, "org.view")
        .filter(_employee_filter(request, filters))
        .select_related("user")
    )


@router.post(
    "/employees/export", summary="导出员工（CSV，受导出防护；POST 以便会话请求经过 CSRF 校验）"
)
def export_employees(request: AuthedRequest, filters: Query[EmployeeFilters]) -> HttpResponse:
    body = services.employees_export_csv(
        actor=request.actor, where=_employee_filter(request, filters)
    )
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="employees.csv"'
    return response


@router.post("/employees", response={201: EmployeeOut}, summary="新建员工与登录账号")
def create_employee(request: AuthedRequest, payload: EmployeeIn) -> Status[Employee]:
    return Status(201, services.employee_create(actor=request.actor, **payload.model_dump()))


@router.get("/employees/{employee_id}", response=EmployeeOut, summary="员工详情")
def get_employee(request: AuthedRequest, employee_id: int) -> Employee:
    return services.employee_get(actor=request.actor, employee_id=employee_id)


@router.patch("/employees/{employee_id}", response=EmployeeOut, summary="修改员工")
def update_employee(request: AuthedRequest, employee_id: int, payload: EmployeePatch) -> Employee:
    changes = patch_changes(payload, not_null=("name", "phone", "email", "id_number", "title"))
    return services.employee_update(actor=request.actor, employee_id=employee_id, changes=changes)


@router.post("/employees/{employee_id}/leave", response=EmployeeOut, summary="办理离职")
def leave_employee(request: AuthedRequest, employee_id: int, payload: ReasonIn) -> Employee:
    return services.employee_leave(
        actor=request.actor, employee_id=employee_id, reason=payload.reason
    )


@router.post("/employees/{employee_id}/unfreeze", response=EmployeeOut, summary="解冻账号")
def unfreeze_employee(request: AuthedRequest, employee_id: int, payload: ReasonIn) -> Employee:
    return services.employee_unfreeze(
        actor=request.actor, employee_id=employee_id, reason=payload.reason
    )


# --- roles and grants ----------------------------------------------------------------------


class RoleOut(Schema):
    id: int
    name: str
    description: str
    permissions: list[str]

    @staticmethod
    def resolve_permissions(obj: Role) -> list[str]:
        return sorted(g.permission_id for g in obj.grants.all())


class RoleIn(In):
    name: str = Field(..., min_length=1, max_length=50)
    description: str = Field("", max_length=200)
    permissions: list[str] = Field(default_factory=list)


class RolePatch(In):
    name: str | None = Field(None, min_length=1, max_length=50)
    description: str | None = Field(None, max_length=200)
    permissions: list[str] | None = None


def _roles(request: AuthedRequest) -> QuerySet[Role]:
    request.actor.require("org.view")
    return Role.objects.visible_to(request.actor, "org.view").prefetch_related("grants")


@router.get("/roles", response=list[RoleOut], summary="角色")
def list_roles(request: AuthedRequest) -> QuerySet[Role]:
    return _roles(request)


@router.post("/roles", response={201: RoleOut}, summary="新建角色")
def create_role(request: AuthedRequest, payload: RoleIn) -> Status[Role]:
    return Status(201, services.role_create(actor=request.actor, **payload.model_dump()))


@router.get("/roles/{role_id}", response=RoleOut, summary="角色详情")
def get_role(request: AuthedRequest, role_id: int) -> Role:
    role = _roles(request).filter(pk=role_id).first()
    if role is None:
        raise NotFound("角色不存在", field="id")
    return role


@router.patch("/roles/{role_id}", response=RoleOut, summary="修改角色")
def update_role(request: AuthedRequest, role_id: int, payload: RolePatch) -> Role:
    changes = patch_changes(payload, not_null=("name", "description", "permissions"))
    return services.role_update(actor=request.actor, role_id=role_id, changes=changes)


@router.delete("/roles/{role_id}", response={204: None}, summary="删除角色")
def delete_role(request: AuthedRequest, role_id: int) -> Status[None]:
    services.role_delete(actor=request.actor, role_id=role_id)
    return Status(204, None)


class AssignmentOut(Schema):
    id: int
    employee_id: int
    role_id: int
    scope: str
    department_id: int | None
    region_id: int | None
    starts_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    temporary: bool = Field(..., alias="is_temporary")
    reason: str


class AssignmentIn(In):
    employee_id: int
    role_id: int
    scope: Literal["self", "department", "region", "tenant"] = Field(
        ...,
        description="数据范围：self 仅本人 / department 本部门及下级 / region 本区域及下级 / tenant 全公司",
    )
    department_id: int | None = None
    region_id: int | None = None
    starts_at: Moment | None = None
    expires_at: Moment | None = Field(None, description="设置后即为临时授权，到期自动失效")
    reason: str = Field("", max_length=200)


class AssignmentFilters(Schema):
    employee_id: int | None = Field(None, ge=1, le=DB_INT_MAX)
    active: bool | None = Field(None, description="只看当前生效的")


@router.get("/assignments", response=list[AssignmentOut], summary="角色授权（含临时授权）")
@paginate(Page)
def list_assignments(
    request: AuthedRequest, filters: Query[AssignmentFilters]
) -> QuerySet[RoleAssignment]:
    request.actor.require("org.view")
    visible = Employee.objects.visible_to(request.actor, "org.view").values("pk")
    qs = RoleAssignment.objects.filter(tenant_id=request.actor.tenant_id, employee_id__in=visible)
    if filters.employee_id is not None:
        qs = qs.filter(employee_id=filters.employee_id)
    if filters.active:
        qs = qs.in_force()
    return qs


@router.post("/assignments", response={201: AssignmentOut}, summary="授予角色（可设到期时间）")
def create_assignment(request: AuthedRequest, payload: AssignmentIn) -> Status[RoleAssignment]:
    return Status(201, services.assignment_create(actor=request.actor, **payload.model_dump()))


@router.post("/assignments/{assignment_id}/revoke", response=AssignmentOut, summary="撤销授权")
def revoke_assignment(
    request: AuthedRequest, assignment_id: int, payload: ReasonIn
) -> RoleAssignment:
    return services.assignment_revoke(
        actor=request.actor, assignment_id=assignment_id, reason=payload.reason
    )


__all__ = ["DataScope", "EmployeeStatus", "router"]
