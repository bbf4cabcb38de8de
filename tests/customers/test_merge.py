"""Merging two profiles of one customer, and undoing it, with nothing lost either way."""

from __future__ import annotations

import pytest

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.customers import services
from jingwei.customers.models import (
    CandidateStatus,
    Customer,
    CustomerCollaborator,
    Identity,
    MergeCandidate,
    MergeRecord,
)
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant
from .factories import make_customer

pytestmark = pytest.mark.django_db


def merge(by, target, source, reason="同一人"):
    return services.customer_merge(
        actor=actor_for(by), target_id=target.pk, source_id=source.pk, reason=reason
    )


def undo(by, record, reason="合并错了"):
    return services.merge_undo(actor=actor_for(by), merge_id=record.pk, reason=reason)


def owners(*customers: Customer) -> dict[int, int]:
    return dict(Identity.objects.filter(customer__in=customers).values_list("pk", "customer_id"))


@pytest.fixture
def pair(admin, org):
    """王建国 registered twice: by phone (上海, with a region) and by WeCom (no region)."""
    a = make_customer(admin, "王建国", "13817450021", region_id=org.shanghai.pk)
    b = make_customer(
        admin, "王建国(企微)", "13817450099", emails=("wjg@163.com",), source="企业微信"
    )
    Customer.objects.filter(pk=a.pk).update(source="")
    a.refresh_from_db()
    return a, b


def test_merging_moves_identities_and_retires_the_source(admin, pair):
    a, b = pair
    before = owners(a, b)

    record = merge(admin, a, b)

    b.refresh_from_db()
    assert b.merged_into_id == a.pk and b.merged_at is not None
    assert set(owners(a, b).values()) == {a.pk}
    moved = record.moved["customers.identity"]
    assert sorted(moved) == sorted(pk for pk, owner in before.items() if owner == b.pk)
    assert set(Customer.objects.active().values_list("pk", flat=True)) == {a.pk}
    assert {e.action for e in AuditEvent.objects.filter(action__startswith="customers.merge")} == {
        "customers.merged"
    }
    assert AuditEvent.objects.filter(
        action="customers.customer.merged_into", subject_id=str(b.pk)
    ).exists()


def test_undoing_restores_exactly_what_moved_and_the_source_is_active_again(admin, pair):
    a, b = pair
    before = owners(a, b)
    record = merge(admin, a, b)

    undo(admin, record)

    b.refresh_from_db()
    record.refresh_from_db()
    assert b.merged_into_id is None
    assert owners(a, b) == before
    assert record.undone_at is not None and record.undo_reason == "合并错了"
    assert AuditEvent.objects.filter(action="customers.unmerged").count() == 1


def test_blank_fields_filled_by_a_merge_are_emptied_by_the_undo_unless_changed_since(
    admin, pair, org
):
    a, b = pair
    record = merge(admin, a, b)
    a.refresh_from_db()
    assert a.source == "企业微信" and record.filled == {"source": ["", "企业微信"]}
    assert a.region_id == org.shanghai.pk  # a's own value is never overwritten

    services.customer_update(actor=actor_for(admin), customer_id=a.pk, changes={"remark": "老客户"})
    undo(admin, record)

    a.refresh_from_db()
    assert (a.source, a.remark) == ("", "老客户")


def test_a_field_someone_changed_after_the_merge_is_kept_by_the_undo(admin, pair):
    a, b = pair
    record = merge(admin, a, b)
    services.customer_update(actor=actor_for(admin), customer_id=a.pk, changes={"source": "电话"})

    undo(admin, record)

    a.refresh_from_db()
    assert a.source == "电话"


def test_collaborators_follow_without_duplicates_and_come_back(admin, pair, org):
    a, b = pair
    both, only_b = (EmployeeFactory(tenant=org.tenant) for _ in range(2))
    for customer, people in ((a, [both]), (b, [both, only_b])):
        for person in people:
            CustomerCollaborator.objects.create(
                tenant=org.tenant, customer=customer, employee=person
            )

    record = merge(admin, a, b)

    assert set(a.collaborations.values_list("employee_id", flat=True)) == {both.pk, only_b.pk}
    assert list(b.collaborations.values_list("employee_id", flat=True)) == [both.pk]
    undo(admin, record)
    assert set(b.collaborations.values_list("employee_id", flat=True)) == {both.pk, only_b.pk}
    assert list(a.collaborations.values_list("employee_id", flat=True)) == [both.pk]


def test_a_chain_of_merges_is_undone_newest_first(admin):
    a, b, c = (make_customer(admin, f"客户{i}", f"1380000000{i}") for i in range(3))
    first = merge(admin, b, c)  # c into b
    second = merge(admin, a, b)  # b (with c's phone) into a

    with pytest.raises(Conflict) as caught:
        undo(admin, first)
    assert caught.value.code == "target_merged"

    undo(admin, second)
    undo(admin, first)
    assert {i.value: i.customer_id for i in Identity.objects.all()} == {
        "13800000000": a.pk,
        "13800000001": b.pk,
        "13800000002": c.pk,
    }


def test_a_merged_customers_id_reads_as_the_survivor(admin, pair, client_as):
    a, b = pair
    record = merge(admin, a, b)

    r = client_as(admin).get(f"/api/customers/{b.pk}")

    assert r.status_code == 200
    body = r.json()
    assert (body["id"], body["redirected_from"], body["merged_from"]) == (a.pk, b.pk, [b.pk])
    assert len(body["identities"]) == 3
    listed = client_as(admin).get("/api/customers").json()
    assert [c["id"] for c in listed["items"]] == [a.pk]
    merges = client_as(admin).get(f"/api/customers/{b.pk}/merges").json()
    assert [m["id"] for m in merges] == [record.pk]


def test_writing_to_a_merged_customers_id_names_the_survivor(admin, pair, client_as):
    a, b = pair
    merge(admin, a, b)

    r = client_as(admin).patch(
        f"/api/customers/{b.pk}", {"remark": "x"}, content_type="application/json"
    )

    assert r.status_code == 409
    assert r.json()["code"] == "customer_merged"
    assert str(a.pk) in r.json()["message"]


def test_refusals_leave_everything_as_it_was(admin, pair):
    a, b = pair
    with pytest.raises(Invalid):
        merge(admin, a, a)
    merge(admin, a, b)
    with pytest.raises(Conflict) as caught:
        merge(admin, a, b)
    assert caught.value.code == "already_merged"
    with pytest.raises(Conflict) as caught:
        merge(admin, b, a)
    assert caught.value.code == "customer_merged"
    assert MergeRecord.objects.count() == 1


def test_a_customer_of_another_tenant_cannot_be_merged_in_or_into(admin, other_admin, pair):
    a, _b = pair
    foreign = make_customer(other_admin, "王建国", "13817450021")
    theirs = owners(foreign)

    for target, source, field in ((a, foreign, "source_id"), (foreign, a, "customer_id")):
        with pytest.raises(NotFound) as caught:
            merge(admin, target, source)
        assert caught.value.field == field

    assert owners(foreign) == theirs
    assert not MergeRecord.objects.exists()


def test_merge_across_tenants_over_the_api_answers_like_a_missing_customer(
    admin, other_admin, pair, client_as
):
    a, _b = pair
    foreign = make_customer(other_admin, "王建国", "13817450021")
    client = client_as(admin)

    r = client.post(
        f"/api/customers/{a.pk}/merge", {"source_id": foreign.pk}, content_type="application/json"
    )
    missing = client.post(
        f"/api/customers/{a.pk}/merge", {"source_id": 987654321}, content_type="application/json"
    )

    assert r.status_code == missing.status_code == 404
    assert (
        r.json()
        == missing.json()
        == {
            "code": "not_found",
            "message": "客户不存在",
            "field": "source_id",
        }
    )
    foreign.refresh_from_db()
    assert foreign.merged_into_id is None


def test_another_tenant_cannot_undo_or_accept_our_merges(admin, other_admin, pair):
    a, b = pair
    record = merge(admin, a, b)
    make_customer(admin, "李娜", "13900001111")
    make_customer(admin, "李娜", "13900001112")
    candidate = MergeCandidate.objects.get(reason="similar_phone")

    with pytest.raises(NotFound):
        undo(other_admin, record)
    with pytest.raises(NotFound):
        services.candidate_accept(actor=actor_for(other_admin), candidate_id=candidate.pk)

    record.refresh_from_db()
    candidate.refresh_from_db()
    assert record.undone_at is None and candidate.status == CandidateStatus.PROPOSED


def test_accepting_a_candidate_merges_into_the_customer_chosen(admin):
    older = make_customer(admin, "王建国", "13817450021")
    newer = make_customer(admin, "王建国", "13817450027", emails=("w@qq.com",))
    candidate = MergeCandidate.objects.get()

    record = services.candidate_accept(
        actor=actor_for(admin), candidate_id=candidate.pk, keep_id=newer.pk, note="同一人"
    )

    candidate.refresh_from_db()
    older.refresh_from_db()
    assert (record.target_id, record.source_id, record.candidate_id) == (
        newer.pk,
        older.pk,
        candidate.pk,
    )
    assert older.merged_into_id == newer.pk
    assert (candidate.status, candidate.note, candidate.decided_by_id) == (
        "accepted",
        "同一人",
        admin.pk,
    )
    with pytest.raises(Conflict) as caught:
        services.candidate_accept(actor=actor_for(admin), candidate_id=candidate.pk)
    assert caught.value.code == "candidate_decided"


def test_keep_id_must_be_one_of_the_pair(admin):
    make_customer(admin, "王建国", "13817450021")
    make_customer(admin, "王建国", "13817450027")
    stranger = make_customer(admin, "李娜", "13900001111")
    candidate = MergeCandidate.objects.get()

    with pytest.raises(Invalid) as caught:
        services.candidate_accept(
            actor=actor_for(admin), candidate_id=candidate.pk, keep_id=stranger.pk
        )
    assert caught.value.field == "keep_id"


def test_undoing_a_merge_rejects_its_pair_so_it_is_not_proposed_again(admin):
    make_customer(admin, "王建国", "13817450021")
    make_customer(admin, "王建国", "13817450027")
    candidate = MergeCandidate.objects.get()
    record = services.candidate_accept(actor=actor_for(admin), candidate_id=candidate.pk)

    undo(admin, record)

    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.REJECTED
    with pytest.raises(Conflict):
        undo(admin, record)


def test_merging_needs_edit_rights_on_both_customers(admin, org, shanghai_agent):
    grant(shanghai_agent, ["customer.edit"], "self")
    mine = make_customer(shanghai_agent, "王建国", "13817450021")
    not_mine = make_customer(admin, "王建国", "13817450027")

    with pytest.raises(NotFound) as caught:
        merge(shanghai_agent, mine, not_mine)
    assert caught.value.field == "source_id"


def test_a_merge_candidate_is_listed_only_to_who_sees_both_customers(
    admin, shanghai_agent, client_as
):
    grant(shanghai_agent, ["customer.edit"], "self")
    make_customer(shanghai_agent, "王建国", "13817450021")
    make_customer(admin, "王建国", "13817450027")

    seen_by_admin = client_as(admin).get("/api/customers/merge-candidates").json()
    seen_by_agent = client_as(shanghai_agent).get("/api/customers/merge-candidates").json()

    assert seen_by_admin["count"] == 1
    assert seen_by_agent["count"] == 0
