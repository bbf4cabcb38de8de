"""Property: whatever sequence of merges, un-merges and identity changes people make on a few
customers, every identity stays owned by exactly one active customer, refusals are exactly the
impossible requests, and undoing all merges (newest first) gives back the original ownership."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.core.errors import Conflict, Invalid
from jingwei.customers import services
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import Customer, Identity, IdentityStatus, MergeRecord
from jingwei.org.scope import actor_for

from .factories import make_customer

CUSTOMERS = 4

Op = tuple[Any, ...]
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("merge"),
            st.integers(0, CUSTOMERS - 1),
            st.integers(0, CUSTOMERS - 1),
        ),
        st.tuples(st.just("undo"), st.integers(0, 30)),
        st.tuples(st.just("remove"), st.integers(0, 30)),
        st.tuples(st.just("add"), st.integers(0, CUSTOMERS - 1)),
    ),
    max_size=14,
)


class _Rollback(Exception):
    pass


def in_savepoint(body: Any) -> None:
    """Run one example in a savepoint that is always rolled back (marked like the test's own
    atomic block, so that the services' durable transactions may open inside it)."""
    savepoint = transaction.atomic()
    savepoint._from_testcase = True  # type: ignore[attr-defined]
    try:
        with savepoint:
            body()
            raise _Rollback
    except _Rollback:
        pass


def ownership() -> dict[int, int]:
    return dict(Identity.objects.values_list("pk", "customer_id"))


def assert_each_identity_on_one_active_customer(customers: list[Customer]) -> None:
    merged = set(Customer.objects.filter(merged_into__isnull=False).values_list("pk", flat=True))
    for pk, owner in ownership().items():
        assert owner not in merged, f"identity {pk} is left on merged customer {owner}"
    active_keys = list(
        Identity.objects.filter(status=IdentityStatus.ACTIVE).values_list(
            "kind", "namespace", "value"
        )
    )
    assert len(active_keys) == len(set(active_keys))


def survivor(merged_into: dict[int, int | None], pk: int) -> int:
    while merged_into[pk] is not None:
        pk = merged_into[pk]  # type: ignore[assignment]
    return pk


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=ops)
def test_any_merges_and_unmerges_keep_ownership_whole_and_undo_restores_it(
    admin: Any, steps: list[Op]
) -> None:
    actor = actor_for(admin)

    def example() -> None:
        customers = [
            make_customer(admin, f"客户{i}", f"1380000{i}001", emails=(f"c{i}@example.cn",))
            for i in range(CUSTOMERS)
        ]
        ids = [c.pk for c in customers]
        home = ownership()  # where each identity belongs when nothing is merged
        model: dict[int, int | None] = dict.fromkeys(ids)
        added = 0

        for step in steps:
            kind = step[0]
            if kind == "merge":
                target, source = ids[step[1]], ids[step[2]]
                expect = (
                    Invalid
                    if target == source
                    else Conflict
                    if model[target] is not None or model[source] is not None
                    else None
                )
                try:
                    services.customer_merge(actor=actor, target_id=target, source_id=source)
                except (Invalid, Conflict) as exc:
                    assert expect is not None and isinstance(exc, expect), (step, exc)
                else:
                    assert expect is None, step
                    model[source] = target
            elif kind == "undo":
                records = list(MergeRecord.objects.order_by("pk"))
                if not records:
                    continue
                merge = records[step[1] % len(records)]
                possible = merge.undone_at is None and model[merge.target_id] is None
                try:
                    services.merge_undo(actor=actor, merge_id=merge.pk)
                except Conflict as exc:
                    assert not possible, (step, exc)
                else:
                    assert possible, step
                    model[merge.source_id] = None
            elif kind == "remove":
                identity = list(Identity.objects.order_by("pk"))[step[1] % len(home)]
                owner = survivor(model, identity.customer_id)
                assert owner == identity.customer_id
                services.identity_remove(actor=actor, customer_id=owner, identity_id=identity.pk)
            else:  # add an identity to whoever customer step[1] now lives in
                owner = survivor(model, ids[step[1]])
                added += 1
                created = services.identity_add(
                    actor=actor,
                    customer_id=owner,
                    identity=IdentityInput("wecom", f"wmAdded{added}"),
                )
                home[created.pk] = owner
            assert_each_identity_on_one_active_customer(customers)
            db_model = dict(Customer.objects.filter(pk__in=ids).values_list("pk", "merged_into"))
            assert db_model == model

        for merge in MergeRecord.objects.filter(undone_at__isnull=True).order_by("-pk"):
            services.merge_undo(actor=actor, merge_id=merge.pk)

        assert ownership() == home
        assert not Customer.objects.filter(merged_into__isnull=False).exists()

    in_savepoint(example)
