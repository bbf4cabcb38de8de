"""factory-boy factories for the foundation's models. Passwords use a fast hash in tests unless a
test asks for the real one (see `password` on EmployeeFactory)."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from jingwei.org.models import (
    Department,
    Employee,
    Region,
    Role,
    RoleAssignment,
    RolePermission,
    Tenant,
)

# Computed once: argon2 is deliberately slow, and most tests only need *a* valid hash.
FAST_PASSWORD = "Secret-pass-123"
_FAST_HASH = make_password(FAST_PASSWORD, hasher="pbkdf2_sha256")


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"测试企业{n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")


def make_node(model: type[Any], tenant: Tenant, name: str, parent: Any = None, **extra: Any) -> Any:
    node = model.objects.create(tenant=tenant, name=name, parent=parent, **extra)
    node.save_path()
    return node


def make_department(tenant: Tenant, name: str, parent: Department | None = None) -> Department:
    return make_node(Department, tenant, name, parent)


def make_region(tenant: Tenant, name: str, parent: Region | None = None, **extra: Any) -> Region:
    return make_node(Region, tenant, name, parent, **extra)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = _FAST_HASH


class EmployeeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Employee

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    employee_no = factory.Sequence(lambda n: f"T{n:05d}")
    name = factory.Sequence(lambda n: f"员工{n}")
    phone = factory.Sequence(lambda n: f"138{n:08d}")


def make_role(tenant: Tenant, name: str, codes: list[str]) -> Role:
    role = Role.objects.create(tenant=tenant, name=name)
    RolePermission.objects.bulk_create(
        RolePermission(tenant=tenant, role=role, permission_id=c) for c in codes
    )
    return role


def grant(
    employee: Employee, codes: list[str], scope: str = "tenant", **extra: Any
) -> RoleAssignment:
    role = make_role(employee.tenant, f"role-{employee.pk}-{Role.objects.count()}", codes)
    return RoleAssignment.objects.create(
        tenant=employee.tenant, employee=employee, role=role, scope=scope, **extra
    )
