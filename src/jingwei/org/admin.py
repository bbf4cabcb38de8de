from django.contrib import admin

from .models import (
    ApiToken,
    Department,
    Employee,
    Region,
    Role,
    RoleAssignment,
    RolePermission,
    Tenant,
)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin[Tenant]):
    list_display = ["name", "slug", "timezone", "is_active"]


@admin.register(Department, Region)
class TreeAdmin(admin.ModelAdmin[Department]):
    list_display = ["name", "tenant", "parent", "path"]
    list_filter = ["tenant"]
    readonly_fields = ["path"]


@admin.register(Employee)
class EmployeeAdmin(admin.ModelAdmin[Employee]):
    list_display = ["employee_no", "name", "tenant", "department", "region", "status", "frozen_at"]
    list_filter = ["tenant", "status"]
    search_fields = ["name", "employee_no"]


class RolePermissionInline(admin.TabularInline[RolePermission, Role]):
    model = RolePermission
    extra = 0


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin[Role]):
    list_display = ["name", "tenant", "description"]
    inlines = [RolePermissionInline]


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin[RoleAssignment]):
    list_display = ["employee", "role", "scope", "starts_at", "expires_at", "revoked_at"]
    list_filter = ["scope", "role"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ["name", "employee", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "digest"]
