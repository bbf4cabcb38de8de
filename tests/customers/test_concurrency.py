"""Races between real threads, each with its own database connection (PostgreSQL: SQLite takes
the write lock when a transaction starts, so its writers never overlap)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from jingwei.core.errors import Conflict
from jingwei.customers import services
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import Customer, Identity, MergeRecord
from jingwei.customers.services import resolution
from jingwei.org.scope import actor_for

from ..concurrency import run_together
from .factories import make_customer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="overlapping writers are a PostgreSQL property (SQLite serialises them)",
    ),
]


class LookupGate:
    """Makes a race certain instead of likely: once armed, the first `held` look-ups of the keys
    wait at a barrier of `parties` (the rest of the parties call `meet`), so everyone sees the
    same "before" and then writes. Records how many owned keys each look-up found."""

    def __init__(self) -> None:
        self.barrier: threading.Barrier | None = None
        self.to_hold = 0
        self.found: list[int] = []

    def arm(self, *, parties: int, held: int) -> None:
        self.barrier, self.to_hold = threading.Barrier(parties), held

    def meet(self) -> None:
        assert self.barrier is not None
        self.barrier.wait(timeout=10)

    def looked_up(self, found: int) -> None:
        if self.barrier is None:
            return
        self.found.append(found)
        if len(self.found) <= self.to_hold:
            self.meet()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> LookupGate:
    gate = LookupGate()
    original = resolution._owners

    def owners(tenant_id: int, stated: Any) -> Any:
        found = original(tenant_id, stated)
        gate.looked_up(len(found))
        return found

    monkeypatch.setattr(resolution, "_owners", owners)
    return gate


def test_two_registrations_of_one_new_phone_at_once_make_one_customer(admin, gate):
    actor = actor_for(admin)
    gate.arm(parties=2, held=2)  # both registrations' look-ups

    def register(email: str) -> Any:
        return services.customer_resolve(
            actor=actor,
            identities=[IdentityInput("phone", "138 1745 0021"), IdentityInput("email", email)],
            profile={"name": "王建国"},
        )

    first, second = run_together(lambda: register("a@163.com"), lambda: register("b@163.com"))

    assert not isinstance(first, Exception), first
    assert not isinstance(second, Exception), second
    assert Customer.objects.count() == 1
    assert {first.outcome, second.outcome} == {"created", "matched"}
    assert first.customer.pk == second.customer.pk
    assert sorted(Identity.objects.values_list("kind", flat=True)) == ["email", "email", "phone"]
    # both looked up before either wrote; the loser looked again after its insert failed
    assert gate.found == [0, 0, 1]


def test_a_registration_racing_a_merge_ends_on_the_surviving_customer(admin, gate):
    actor = actor_for(admin)
    keeper = make_customer(admin, "王建国", "13817450021")
    duplicate = make_customer(admin, "王建国(企微)", emails=("wjg@163.com",))
    gate.arm(parties=2, held=1)  # the registration's look-up meets the merge

    def merge() -> Any:
        gate.meet()  # the registration has read the e-mail's owner: the duplicate
        return services.customer_merge(actor=actor, target_id=keeper.pk, source_id=duplicate.pk)

    def register() -> Any:
        return services.customer_resolve(
            actor=actor,
            identities=[IdentityInput("email", "wjg@163.com"), IdentityInput("wecom", "wmWJG")],
            profile={"name": "王建国"},
        )

    merged, registered = run_together(merge, register)

    assert isinstance(merged, MergeRecord), merged
    assert not isinstance(registered, Exception), registered
    assert set(Identity.objects.values_list("customer_id", flat=True)) == {keeper.pk}
    duplicate.refresh_from_db()
    assert duplicate.merged_into_id == keeper.pk


def test_one_customer_merged_into_two_others_at_once_goes_into_exactly_one(admin):
    actor = actor_for(admin)
    a, b, source = (make_customer(admin, f"客户{i}", f"1380000000{i}") for i in range(3))

    results = run_together(
        lambda: services.customer_merge(actor=actor, target_id=a.pk, source_id=source.pk),
        lambda: services.customer_merge(actor=actor, target_id=b.pk, source_id=source.pk),
    )

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "MergeRecord"]
    assert next(r for r in results if isinstance(r, Conflict)).code == "already_merged"
    assert MergeRecord.objects.count() == 1
    source.refresh_from_db()
    assert Identity.objects.get(value="13800000002").customer_id == source.merged_into_id


def test_two_customers_merged_into_each_other_at_once_merge_once(admin):
    actor = actor_for(admin)
    a, b = (make_customer(admin, f"客户{i}", f"1380000000{i}") for i in range(2))

    results = run_together(
        lambda: services.customer_merge(actor=actor, target_id=a.pk, source_id=b.pk),
        lambda: services.customer_merge(actor=actor, target_id=b.pk, source_id=a.pk),
    )

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "MergeRecord"]
    assert Customer.objects.active().count() == 1
