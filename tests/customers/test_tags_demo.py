"""The demo's tags and events: JOURNEYS.md §D2–D3 as a visitor sees them, loadable twice."""

from __future__ import annotations

import pytest

from jingwei.audit.models import AuditEvent
from jingwei.customers import services
from jingwei.customers.demo import demo_tags, load_demo_customers
from jingwei.customers.identities import identity_key
from jingwei.customers.models import Customer, CustomerEvent, CustomerTag, Identity, Tag, TagRule
from jingwei.org.demo import load_demo
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def owner(tenant_id: int, kind: str, value: str, namespace: str = "") -> Customer:
    key = identity_key(kind, value, namespace)
    return Identity.objects.get(
        tenant_id=tenant_id, kind=key.kind, namespace=key.namespace, value=key.value
    ).customer


def tags(customer: Customer) -> set[tuple[str, str, str | None]]:
    return {
        (t.tag.name, t.source, t.rule.name if t.rule else None)
        for t in CustomerTag.objects.filter(customer=customer).select_related("tag", "rule")
    }


def counts() -> dict[str, int]:
    return {
        m.__name__: m.objects.count()
        for m in (Tag, TagRule, CustomerTag, CustomerEvent, AuditEvent, Customer)
    }


def test_the_demo_rules_tag_the_demo_customers_and_loading_twice_changes_nothing():
    tenant = load_demo()
    load_demo_customers(tenant.pk)
    demo_tags(tenant.pk)
    loaded = counts()

    demo_tags(tenant.pk)

    assert counts() == loaded
    wang = owner(tenant.pk, "phone", "13817450021")
    zhao = owner(tenant.pk, "wechat_unionid", "oUnionJwDemoZhaoMin01")
    zhou = owner(tenant.pk, "shop_buyer", "tingting_zhou88", "tmall")
    assert tags(wang) == {
        ("高频用户", "rule", "高频用户"),
        ("高价值", "manual", None),
        ("空调", "manual", None),
    }
    assert tags(zhao) == {("潜在流失客户", "rule", "潜在流失客户")}
    assert tags(zhou) == {("中价值", "manual", None)}  # two orders: not yet 高频用户


def test_wang_jianguos_timeline_shows_his_mail_orders_and_survey_newest_first():
    tenant = load_demo()
    load_demo_customers(tenant.pk)
    demo_tags(tenant.pk)
    wang = owner(tenant.pk, "phone", "13817450021")
    admin = actor_for(Employee.objects.get(tenant=tenant, user__username="admin"))

    touches = services.timeline_list(actor=admin, customer_id=wang.pk).exclude(kind="system")

    assert [e.kind for e in touches] == ["survey", "order", "mail", "order", "order"]
