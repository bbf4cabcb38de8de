"""The demo customers: loadable any number of times, spread over the demo company's regions, and
telling the story of JOURNEYS.md §C and §D through the API."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.core import serializers
from django.test import Client

from jingwei.customers.demo import load_demo_customers
from jingwei.customers.models import Customer, MergeCandidate, MergeRecord
from jingwei.flows.demo import load_shipped_flows
from jingwei.org.demo import DEMO_PASSWORD, load_demo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Twenty demo logins hashed with argon2 per load would dominate these tests' time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def dump_everything() -> str:
    models = [
        m
        for m in apps.get_models()
        if m._meta.app_label in {"customers", "org", "audit", "notify", "core", "auth"}
    ]
    rows = []
    for model in models:
        rows.extend(model.objects.order_by("pk"))
    return serializers.serialize("json", rows)


def load() -> int:
    tenant = load_demo()
    load_shipped_flows(tenant.pk)
    load_demo_customers(tenant.pk)
    return tenant.pk


def login(username: str) -> Client:
    client = Client()
    r = client.post(
        "/api/auth/login",
        {"username": username, "password": DEMO_PASSWORD},
        content_type="application/json",
    )
    assert r.status_code == 200
    return client


def test_loading_the_demo_customers_twice_changes_nothing():
    load()
    first = dump_everything()

    load()

    assert dump_everything() == first


def test_about_thirty_customers_across_every_region_with_candidates_and_a_merge():
    tenant_id = load()

    active = Customer.objects.filter(tenant_id=tenant_id).active()
    assert 28 <= active.count() <= 32
    regions = set(active.values_list("region__name", flat=True))
    assert regions == {"上海", "浦东", "杭州", "广州", "深圳", "成都", "贵阳", "东南亚"}
    assert all(c.identities.exists() for c in active)
    reasons = set(MergeCandidate.objects.filter(status="proposed").values_list("reason", flat=True))
    assert reasons == {"similar_phone", "same_company"}
    merge = MergeRecord.objects.get()
    assert merge.source.name == merge.target.name == "陈晓东"


def test_wang_jianguo_is_one_profile_with_every_identity_and_a_look_alike():
    load()
    client = login("admin")

    found = client.get("/api/customers", {"q": "王建国"}).json()["items"]
    assert len(found) == 2  # him, and the look-alike registered by phone
    him = next(c for c in found if c["level"] == "vip")
    detail = client.get(f"/api/customers/{him['id']}").json()
    assert {i["kind"] for i in detail["identities"]} == {"phone", "wecom", "shop_buyer", "email"}
    candidates = client.get("/api/customers/merge-candidates", {"customer_id": him["id"]}).json()
    assert candidates["items"][0]["reason"] == "similar_phone"


def test_the_east_manager_sees_east_customers_in_full_and_an_agent_her_own_masked():
    load()

    east = login("zhangwei").get("/api/customers", {"limit": 100}).json()["items"]
    own = login("wangfang").get("/api/customers", {"limit": 100}).json()["items"]

    east_regions = {c["region_id"] for c in east}
    south = login("huangmin").get("/api/customers", {"limit": 100}).json()["items"]
    assert east and south and not east_regions & {c["region_id"] for c in south}
    assert all("*" not in (c["phone"] or "") for c in east)  # 区域经理 may see PII
    assert own and all(c["owner_id"] == own[0]["owner_id"] for c in own)
    assert all("*" in c["phone"] for c in own if c["phone"])
