from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from jingwei.core.admin import ReadOnlyAdmin

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
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "timezone", "is_active"]


@admin.register(Department, Region)
class TreeAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "parent", "path"]
    list_filter = ["tenant"]
    readonly_fields = ["path"]


@admin.register(Employee)
class EmployeeAdmin(ReadOnlyAdmin):
    list_display = ["employee_no", "name", "tenant", "department", "region", "status", "frozen_at"]
    list_filter = ["tenant", "status"]
    search_fields = ["name", "employee_no"]


class RolePermissionInline(admin.TabularInline):
    model = RolePermission
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Role)
class RoleAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "description"]
    inlines = [RolePermissionInline]


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(ReadOnlyAdmin):
    list_display = ["employee", "role", "scope", "starts_at", "expires_at", "revoked_at"]
    list_filter = ["scope", "role"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "employee", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "digest"]
