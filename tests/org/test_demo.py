"""The demo tenant: the company of JOURNEYS.md, loadable any number of times."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core import serializers
from django.test import Client

from jingwei.org.demo import DEMO_PASSWORD, DUTY_ROLES, load_demo
from jingwei.org.models import Employee, Region, Role

pytestmark = pytest.mark.django_db


def dump_everything() -> str:
    models = [
        m
        for m in apps.get_models()
        if m._meta.app_label in {"org", "audit", "notify", "core", "auth"}
    ]
    rows = []
    for model in models:
        rows.extend(model.objects.order_by("pk"))
    return serializers.serialize("json", rows)


def test_loading_the_demo_twice_changes_nothing():
    load_demo()
    first = dump_everything()

    load_demo()

    assert dump_everything() == first


def test_demo_company_has_regions_departments_and_twenty_people_in_their_roles():
    tenant = load_demo()

    assert tenant.name == "经纬设备服务"
    top = set(Region.objects.filter(tenant=tenant, parent=None).values_list("name", flat=True))
    assert top == {"华东", "华南", "西南", "东南亚"}
    pudong = Region.objects.get(tenant=tenant, name="浦东")
    assert [r.name for r in Region.objects.filter(pk__in=pudong.ancestor_ids())] == ["华东", "上海"]
    assert Region.objects.get(tenant=tenant, name="东南亚").currency == "USD"
    assert Employee.objects.filter(tenant=tenant).count() == 20
    # five job roles, plus the duty roles the shipped flows assign work to by name
    assert Role.objects.filter(tenant=tenant).count() == 5 + len(DUTY_ROLES)
    assert set(DUTY_ROLES) >= {"客服", "调度主管", "质检员", "结算专员", "客诉主管"}


def test_demo_logins_work_and_scopes_tell_the_story():
    load_demo()
    client = Client()
    r = client.post(
        "/api/auth/login",
        {"username": "zhangwei", "password": DEMO_PASSWORD},
        content_type="application/json",
    )
    assert r.status_code == 200

    names = {e["name"] for e in client.get("/api/org/employees", {"limit": 100}).json()["items"]}

    # 华东's manager sees 华东's people, never 华南's.
    assert {"张伟", "刘洋", "杨帆", "赵磊"} <= names
    assert not names & {"黄敏", "吴昊", "孙强"}
    assert get_user_model().objects.filter(username="admin").exists()
