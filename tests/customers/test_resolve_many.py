"""Resolving many customers at once (imports, syncs, the event batch) ends where resolving them
one by one would: the same identities on the same groups of people, in a few statements."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import DomainError, Invalid
from jingwei.customers import services
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import Customer, Identity
from jingwei.customers.services import ResolveItem
from jingwei.org.models import Tenant

from ..factories import TenantFactory

pytestmark = pytest.mark.django_db

PHONES = [f"1380000{n:04d}" for n in range(8)]
MAILS = [f"u{n}@example.com" for n in range(4)]


def identity(kind_value: tuple[str, str]) -> IdentityInput:
    return IdentityInput(*kind_value)


keys = st.one_of(
    st.sampled_from(PHONES).map(lambda v: ("phone", v)),
    st.sampled_from(MAILS).map(lambda v: ("email", v)),
)
batches = st.lists(
    st.tuples(st.lists(keys, min_size=0, max_size=3), st.sampled_from(["王建国", "李娜", "张伟"])),
    min_size=1,
    max_size=12,
)
existing = st.lists(st.lists(keys, min_size=1, max_size=2), max_size=4)


def groups(tenant: Tenant) -> set[frozenset[tuple[str, str]]]:
    """Which identity keys ended on one active customer together (ids aside)."""
    found: dict[int, set[tuple[str, str]]] = {}
    for customer_id, kind, value in Identity.objects.filter(
        tenant=tenant, status="active"
    ).values_list("customer_id", "kind", "value"):
        found.setdefault(customer_id, set()).add((kind, value))
    return {frozenset(v) for v in found.values()}


def setup_tenant(slug: str, before: list[list[tuple[str, str]]]) -> Tenant:
    tenant = TenantFactory(slug=slug, name=slug)
    for n, stated in enumerate(before):
        services.resolve_in_transaction(
            actor=None,
            tenant_id=tenant.pk,
            identities=[identity(k) for k in stated],
            profile={"name": f"老客户{n}"},
        )
    return tenant


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=existing, batch=batches)
def test_a_batch_ends_where_one_by_one_would(before: Any, batch: Any) -> None:
    with transaction.atomic():
        one = setup_tenant("one-by-one", before)
        many = setup_tenant("all-at-once", before)
        outcomes_one = []
        for stated, name in batch:
            try:
                with transaction.atomic():
                    r = services.resolve_in_transaction(
                        actor=None,
                        tenant_id=one.pk,
                        identities=[identity(k) for k in stated],
                        profile={"name": name},
                    )
                outcomes_one.append(r.outcome)
            except DomainError:
                outcomes_one.append("refused")
        results = services.resolve_many(
            actor=None,
            tenant_id=many.pk,
            items=[
                ResolveItem([identity(k) for k in stated], {"name": name}) for stated, name in batch
            ],
        )

        assert groups(one) == groups(many)
        assert [r.outcome for r in results] == outcomes_one
        assert Customer.objects.filter(tenant=one).active().count() == (
            Customer.objects.filter(tenant=many).active().count()
        )
        transaction.set_rollback(True)


def test_a_thousand_new_and_known_customers_take_a_few_statements(org: Any) -> None:
    tenant_id = org.tenant.pk
    services.resolve_many(
        actor=None,
        tenant_id=tenant_id,
        items=[
            ResolveItem([IdentityInput("phone", f"1390000{n:04d}")], {"name": f"客户{n}"})
            for n in range(500)
        ],
    )
    items = [
        ResolveItem(
            [
                IdentityInput("phone", f"1390000{n:04d}"),
                IdentityInput("email", f"c{n}@example.com"),
            ],
            {"name": f"客户{n}"},
        )
        for n in range(1000)  # 500 known phones (gaining an e-mail), 500 new customers
    ]
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        results = services.resolve_many(actor=None, tenant_id=tenant_id, items=items)

    assert [r.outcome for r in results] == ["matched"] * 500 + ["created"] * 500
    assert Customer.objects.filter(tenant_id=tenant_id).count() == 1000
    assert Identity.objects.filter(tenant_id=tenant_id).count() == 2000
    assert len(queries.captured_queries) < 60  # SQLite splits bulk inserts finer than PostgreSQL
    event = AuditEvent.objects.filter(action="customers.customer.batch_resolved").latest("pk")
    assert len(event.data["created"]) == 500 and len(event.data["matched"]) == 500


def test_a_bad_identity_is_refused_naming_its_item(org: Any) -> None:
    with pytest.raises(Invalid) as refused:
        services.resolve_many(
            actor=None,
            tenant_id=org.tenant.pk,
            items=[
                ResolveItem([IdentityInput("phone", "13800000000")], {"name": "甲"}),
                ResolveItem([IdentityInput("email", "not-an-email")], {"name": "乙"}),
            ],
        )
    assert refused.value.field == "items.1.identities.0.value"
    assert not Customer.objects.filter(tenant=org.tenant).exists()


def test_another_tenants_region_is_refused_naming_its_item(org: Any, other_org: Any) -> None:
    with pytest.raises(DomainError) as refused:
        services.resolve_many(
            actor=None,
            tenant_id=org.tenant.pk,
            items=[
                ResolveItem(
                    [IdentityInput("phone", "13800000000")],
                    {"name": "甲", "region_id": org.east.pk},
                ),
                ResolveItem(
                    [IdentityInput("phone", "13800000001")],
                    {"name": "乙", "region_id": other_org.east.pk},
                ),
            ],
        )
    assert refused.value.field == "items.1.region_id"
