"""Tenants, their departments and regions (trees), employees, roles and role assignments."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from jingwei.core.models import TenantModel, TenantQuerySet

from .scope import ScopeFields


class Tenant(models.Model):
    """A customer company of Jingwei. Everything else belongs to exactly one."""

    name = models.CharField("名称", max_length=100)
    slug = models.SlugField("标识", max_length=50, unique=True)
    timezone = models.CharField("时区", max_length=50, default="Asia/Shanghai")
    is_active = models.BooleanField("启用", default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "租户"
        verbose_name_plural = "租户"

    def __str__(self) -> str:
        return self.name


def path_ids(path: str) -> list[int]:
    """The ids of a materialised path ("/1/5/12/" -> [1, 5, 12]), top first."""
    return [int(part) for part in path.strip("/").split("/") if part]


class TreeNode(TenantModel):
    """A node of a per-tenant tree with a materialised path ("/1/5/12/") for subtree queries."""

    name = models.CharField("名称", max_length=100)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    path = models.CharField(max_length=255, db_index=True, editable=False, default="")
    sort = models.IntegerField("排序", default=0)

    class Meta:
        abstract = True
        ordering = ["path"]

    def __str__(self) -> str:
        return self.name

    @property
    def depth(self) -> int:
        return self.path.count("/") - 1

    def save_path(self) -> None:
        """Set and store the path from the parent's; call after the row has its id."""
        self.path = f"{self.parent.path if self.parent else '/'}{self.pk}/"
        self.save(update_fields=["path"])

    def ancestor_ids(self) -> list[int]:
        return path_ids(self.path)[:-1]


class Department(TreeNode):
    class Meta(TreeNode.Meta):
        verbose_name = "部门"
        verbose_name_plural = "部门"


class Region(TreeNode):
    """A sales/service region, e.g. 华东 > 上海 > 浦东. Currency and time zone for settlement."""

    currency = models.CharField("结算币种", max_length=3, default="CNY")
    timezone = models.CharField("时区", max_length=50, default="Asia/Shanghai")

    class Meta(TreeNode.Meta):
        verbose_name = "区域"
        verbose_name_plural = "区域"


class EmployeeStatus(models.TextChoices):
    ACTIVE = "active", "在职"
    LEFT = "left", "离职"


class Employee(TenantModel):
    # A login belongs to one tenant (the services keep it so); the constraint includes the tenant
    # because every unique constraint on a tenant-owned table does (DESIGN §6).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="employees"
    )
    employee_no = models.CharField("工号", max_length=32)
    name = models.CharField("姓名", max_length=50)
    phone = models.CharField("手机号", max_length=20, blank=True, default="")
    email = models.EmailField("邮箱", blank=True, default="")
    id_number = models.CharField("证件号", max_length=32, blank=True, default="")
    title = models.CharField("职位", max_length=50, blank=True, default="")
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.PROTECT, related_name="employees"
    )
    region = models.ForeignKey(
        Region, null=True, blank=True, on_delete=models.PROTECT, related_name="employees"
    )
    manager = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports"
    )
    status = models.CharField(
        "状态", max_length=10, choices=EmployeeStatus.choices, default=EmployeeStatus.ACTIVE
    )
    left_at = models.DateTimeField("离职时间", null=True, blank=True)
    frozen_at = models.DateTimeField("冻结时间", null=True, blank=True)
    frozen_reason = models.CharField("冻结原因", max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # An employee record is "owned" by the employee themself.
    scope_fields = ScopeFields(owner="id", department="department", region="region")

    class Meta:
        verbose_name = "员工"
        verbose_name_plural = "员工"
        ordering = ["employee_no"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "employee_no"], name="employee_no_per_tenant"
            ),
            models.UniqueConstraint(fields=["tenant", "user"], name="employee_user_per_tenant"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_frozen(self) -> bool:
        return self.frozen_at is not None

    @property
    def may_sign_in(self) -> bool:
        return self.status == EmployeeStatus.ACTIVE and self.frozen_at is None


class Permission(models.Model):
    """Shared reference data: one row per code in org.permissions.PERMISSIONS."""

    code = models.CharField(max_length=64, primary_key=True)
    label = models.CharField(max_length=100)

    class Meta:
        verbose_name = "权限"
        verbose_name_plural = "权限"
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.label}"


class Role(TenantModel):
    name = models.CharField("名称", max_length=50)
    description = models.CharField("说明", max_length=200, blank=True, default="")
    permissions: models.ManyToManyField[Permission, RolePermission] = models.ManyToManyField(
        Permission, through="RolePermission", related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "角色"
        verbose_name_plural = "角色"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="role_name_per_tenant")
        ]

    def __str__(self) -> str:
        return self.name


class RolePermission(TenantModel):
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="grants")
    permission = models.ForeignKey(Permission, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "role", "permission"], name="role_permission_unique"
            )
        ]


class DataScope(models.TextChoices):
    SELF = "self", "仅本人"
    DEPARTMENT = "department", "本部门及下级"
    REGION = "region", "本区域及下级"
    TENANT = "tenant", "全公司"


class RoleAssignmentQuerySet(TenantQuerySet):
    def in_force(self, at: datetime | None = None) -> RoleAssignmentQuerySet:
        """Assignments that hold now: started, and not expired. Expired grants stop on their own."""
        at = at or timezone.now()
        return self.filter(
            Q(starts_at__isnull=True) | Q(starts_at__lte=at),
            Q(expires_at__isnull=True) | Q(expires_at__gt=at),
            # Revoked later than `at` still held at `at`: past access can be reconstructed.
            Q(revoked_at__isnull=True) | Q(revoked_at__gt=at),
        )


class RoleAssignment(TenantModel):
    """An employee holds a role with a data scope. With `expires_at` it is a temporary grant.

    The scope is anchored at `department`/`region` when set, else at the employee's own.
    """

    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="assignments")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="assignments")
    scope = models.CharField("数据范围", max_length=16, choices=DataScope.choices)
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    region = models.ForeignKey(
        Region, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    starts_at = models.DateTimeField("生效时间", null=True, blank=True)
    expires_at = models.DateTimeField("到期时间", null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField("原因", max_length=200, blank=True, default="")
    granted_by = models.ForeignKey(
        Employee, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RoleAssignmentQuerySet.as_manager()  # type: ignore[misc]

    scope_fields = ScopeFields(
        owner="employee", department="employee__department", region="employee__region"
    )

    class Meta:
        verbose_name = "角色授权"
        verbose_name_plural = "角色授权"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.employee} · {self.role} · {self.get_scope_display()}"

    @property
    def is_temporary(self) -> bool:
        return self.expires_at is not None


class ApiToken(TenantModel):
    """A personal API token. Only a SHA-256 digest is kept; the token is shown once, at creation."""

    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField("名称", max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    digest = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    scope_fields = ScopeFields(
        owner="employee", department="employee__department", region="employee__region"
    )

    class Meta:
        verbose_name = "API 令牌"
        verbose_name_plural = "API 令牌"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
