"""Personas shared by every test: an HQ admin, a regional (华东) manager, an 上海 agent, and an
admin of another tenant. `client_as(employee)` gives a logged-in Django test client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from jingwei.org.models import Department, Employee, Region, Tenant
from jingwei.org.permissions import PERMISSIONS
from jingwei.org.scope import Actor, actor_for

from .factories import EmployeeFactory, TenantFactory, grant, make_department, make_region


@pytest.fixture(autouse=True, scope="session")
def _private_cache() -> Any:
    # The default file cache lives in var/ and would be shared by parallel test runs.
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        yield


@pytest.fixture(autouse=True)
def _clear_cache() -> Any:
    cache.clear()
    yield
    cache.clear()


@dataclass
class Org:
    tenant: Tenant
    hq: Department
    east_dept: Department
    south_dept: Department
    east: Region
    shanghai: Region
    pudong: Region
    south: Region
    guangzhou: Region


def build_org(tenant: Tenant) -> Org:
    hq = make_department(tenant, "总部")
    east_dept = make_department(tenant, "华东服务部", hq)
    south_dept = make_department(tenant, "华南服务部", hq)
    east = make_region(tenant, "华东")
    shanghai = make_region(tenant, "上海", east)
    pudong = make_region(tenant, "浦东", shanghai)
    south = make_region(tenant, "华南")
    guangzhou = make_region(tenant, "广州", south)
    return Org(tenant, hq, east_dept, south_dept, east, shanghai, pudong, south, guangzhou)


@pytest.fixture
def org(db: Any) -> Org:
    return build_org(TenantFactory(name="经纬设备服务", slug="jingwei-test"))


@pytest.fixture
def admin(org: Org) -> Employee:
    """HQ admin: every permission, whole tenant."""
    e = EmployeeFactory(tenant=org.tenant, name="周志远", department=org.hq)
    grant(e, sorted(PERMISSIONS), "tenant")
    return e


@pytest.fixture
def east_manager(org: Org) -> Employee:
    """华东 regional manager: sees 华东 and below, may see PII."""
    e = EmployeeFactory(tenant=org.tenant, name="张伟", department=org.east_dept, region=org.east)
    grant(
        e, ["org.view", "org.export", "audit.view", "customer.view", "customer.view_pii"], "region"
    )
    return e


@pytest.fixture
def shanghai_agent(org: Org) -> Employee:
    """上海 agent: sees only their own rows, no PII."""
    e = EmployeeFactory(
        tenant=org.tenant, name="王芳", department=org.east_dept, region=org.shanghai
    )
    grant(e, ["org.view", "customer.view"], "self")
    return e


@pytest.fixture
def south_engineer(org: Org) -> Employee:
    return EmployeeFactory(
        tenant=org.tenant, name="吴昊", department=org.south_dept, region=org.guangzhou
    )


@pytest.fixture
def other_org(db: Any) -> Org:
    return build_org(TenantFactory(name="别家公司", slug="other-tenant"))


@pytest.fixture
def other_admin(other_org: Org) -> Employee:
    """Admin of another tenant, with every permission there."""
    e = EmployeeFactory(tenant=other_org.tenant, name="外人", department=other_org.hq)
    grant(e, sorted(PERMISSIONS), "tenant")
    return e


@pytest.fixture
def client_as() -> Callable[[Employee], Client]:
    def make(employee: Employee) -> Client:
        client = Client()
        client.force_login(employee.user)
        return client

    return make


@pytest.fixture
def actor_of() -> Callable[[Employee], Actor]:
    return actor_for
