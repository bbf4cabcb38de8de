"""The customer API as people use it: who sees which customers, phones masked unless one may see
them, registering twice finds the same customer, and identities added and removed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jingwei.audit.models import AuditEvent
from jingwei.customers.models import Customer, CustomerCollaborator, Identity

from ..factories import EmployeeFactory, grant
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [c["id"] for c in response.json()["items"]]


@pytest.fixture
def book(admin, org, shanghai_agent):
    """Customers of 浦东 (the agent's own), 上海 and 广州."""
    grant(shanghai_agent, ["customer.edit"], "self")
    return {
        "pudong": make_customer(
            shanghai_agent,
            "王建国",
            "13817450021",
            emails=("wangjianguo@163.com",),
            region_id=org.pudong.pk,
            level="vip",
        ),
        "shanghai": make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk),
        "guangzhou": make_customer(
            admin, "黄丽", "13926075512", region_id=org.guangzhou.pk, company_name="珠江餐饮"
        ),
    }


def test_each_reader_lists_the_customers_of_their_scope(
    book, admin, east_manager, shanghai_agent, client_as
):
    everyone = ids(client_as(admin).get("/api/customers"))
    east = ids(client_as(east_manager).get("/api/customers"))
    own = ids(client_as(shanghai_agent).get("/api/customers"))

    assert set(everyone) == {c.pk for c in book.values()}
    assert set(east) == {book["pudong"].pk, book["shanghai"].pk}
    assert own == [book["pudong"].pk]


def test_a_collaborator_sees_the_customer_like_its_owner(book, org, client_as):
    helper = EmployeeFactory(tenant=org.tenant, region=org.guangzhou)
    grant(helper, ["customer.view"], "self")
    CustomerCollaborator.objects.create(
        tenant=org.tenant, customer=book["shanghai"], employee=helper
    )

    assert ids(client_as(helper).get("/api/customers")) == [book["shanghai"].pk]
    assert client_as(helper).get(f"/api/customers/{book['shanghai'].pk}").status_code == 200
    assert client_as(helper).get(f"/api/customers/{book['pudong'].pk}").status_code == 404


def test_phones_and_identity_values_are_masked_without_view_pii(
    book, east_manager, shanghai_agent, client_as
):
    path = f"/api/customers/{book['pudong'].pk}"

    masked = client_as(shanghai_agent).get(path).json()
    full = client_as(east_manager).get(path).json()

    assert masked["phone"] == "138****0021"
    assert {i["value"] for i in masked["identities"]} == {"138****0021", "w***@163.com"}
    assert full["phone"] == "13817450021"
    assert {i["value"] for i in full["identities"]} == {"13817450021", "wangjianguo@163.com"}
    listed = client_as(shanghai_agent).get("/api/customers").json()["items"][0]
    assert listed["phone"] == "138****0021"


@pytest.mark.parametrize(
    "query,expected",
    [
        ({"q": "王建"}, ["pudong"]),
        ({"q": "珠江"}, ["guangzhou"]),
        ({"q": "1745 0021"}, ["pudong"]),
        ({"q": "+86 13916620318"}, ["shanghai"]),
        ({"q": "139"}, []),  # three digits search names only, not phones
        ({"level": "vip"}, ["pudong"]),
    ],
)
def test_search_by_name_company_or_phone_and_filter_by_level(
    book, admin, client_as, query, expected
):
    found = ids(client_as(admin).get("/api/customers", query))
    assert set(found) == {book[k].pk for k in expected}


def test_filter_by_region_includes_its_subregions_and_by_owner(
    book, admin, org, shanghai_agent, client_as
):
    client = client_as(admin)
    assert set(ids(client.get("/api/customers", {"region_id": org.shanghai.pk}))) == {
        book["pudong"].pk,
        book["shanghai"].pk,
    }
    assert ids(client.get("/api/customers", {"owner_id": shanghai_agent.pk})) == [book["pudong"].pk]


def test_registering_a_known_phone_returns_that_customer_with_the_new_identity(
    book, admin, client_as
):
    r = client_as(admin).post(
        "/api/customers",
        {
            "name": "王先生",
            "identities": [
                {"kind": "phone", "value": "+86 138 1745 0021"},
                {"kind": "wecom", "value": "wmWang01", "verified": True},
            ],
        },
        content_type=JSON,
    )

    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["id"], body["outcome"], body["name"]) == (book["pudong"].pk, "matched", "王建国")
    assert {i["kind"] for i in body["identities"]} == {"phone", "email", "wecom"}


def test_registering_a_new_customer_answers_created_with_its_candidates(book, admin, client_as):
    r = client_as(admin).post(
        "/api/customers",
        {"name": "王建国", "identities": [{"kind": "phone", "value": "13817450027"}]},
        content_type=JSON,
    )

    body = r.json()
    assert (r.status_code, body["outcome"], body["owner_id"]) == (201, "created", admin.pk)
    assert len(body["merge_candidate_ids"]) == 1
    candidates = client_as(admin).get("/api/customers/merge-candidates").json()["items"]
    assert candidates[0]["reason"] == "similar_phone"
    assert {candidates[0]["customer"]["id"], candidates[0]["other"]["id"]} == {
        book["pudong"].pk,
        body["id"],
    }


def test_a_retried_registration_with_the_same_idempotency_key_creates_once(admin, client_as):
    client = client_as(admin)
    payload = {"name": "赵敏", "identities": [{"kind": "email", "value": "zm@qq.com"}]}

    first = client.post(
        "/api/customers", payload, content_type=JSON, headers={"Idempotency-Key": "k1"}
    )
    again = client.post(
        "/api/customers", payload, content_type=JSON, headers={"Idempotency-Key": "k1"}
    )

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Customer.objects.count() == 1
    assert AuditEvent.objects.filter(action="customers.customer.created").count() == 1


def test_a_bad_identity_in_a_registration_names_its_place(admin, client_as):
    r = client_as(admin).post(
        "/api/customers",
        {"name": "王", "identities": [{"kind": "wechat_openid", "value": "oAbc"}]},
        content_type=JSON,
    )

    assert r.status_code == 422
    assert r.json()["field"] == "identities.0.namespace"
    assert not Customer.objects.exists()


def test_reading_without_customer_view_is_refused_and_writing_needs_customer_edit(
    book, east_manager, south_engineer, client_as
):
    assert client_as(south_engineer).get("/api/customers").status_code == 403

    r = client_as(east_manager).patch(
        f"/api/customers/{book['shanghai'].pk}", {"level": "vip"}, content_type=JSON
    )
    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"


def test_handing_a_customer_to_someone_else_needs_the_assign_permission(
    book, shanghai_agent, admin, client_as
):
    r = client_as(shanghai_agent).patch(
        f"/api/customers/{book['pudong'].pk}", {"owner_id": admin.pk}, content_type=JSON
    )

    assert r.status_code == 403
    assert (r.json()["code"], r.json()["field"]) == ("forbidden", "owner_id")
    book["pudong"].refresh_from_db()
    assert book["pudong"].owner_id == shanghai_agent.pk


def test_an_edit_cannot_move_a_customer_out_of_the_editors_scope(
    book, east_manager, org, client_as
):
    grant(east_manager, ["customer.edit"], "region")
    r = client_as(east_manager).patch(
        f"/api/customers/{book['shanghai'].pk}", {"region_id": org.guangzhou.pk}, content_type=JSON
    )

    assert r.status_code == 403
    assert r.json()["code"] == "out_of_scope"
    book["shanghai"].refresh_from_db()
    assert book["shanghai"].region_id == org.shanghai.pk


def test_updating_a_customer_records_before_and_after(book, admin, org, client_as):
    helper = EmployeeFactory(tenant=org.tenant)
    r = client_as(admin).patch(
        f"/api/customers/{book['shanghai'].pk}",
        {"level": "vip", "remark": "年度维保客户", "collaborator_ids": [helper.pk]},
        content_type=JSON,
    )

    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["level"], body["remark"], body["collaborator_ids"]) == (
        "vip",
        "年度维保客户",
        [helper.pk],
    )
    event = AuditEvent.objects.get(action="customers.customer.updated")
    assert event.before == {"level": "normal", "remark": ""}
    assert event.after == {"level": "vip", "remark": "年度维保客户"}
    assert event.data == {"collaborators": {"added": [helper.pk], "removed": []}}


def test_null_for_a_field_that_cannot_be_empty_is_refused(book, admin, client_as):
    r = client_as(admin).patch(
        f"/api/customers/{book['shanghai'].pk}", {"name": None}, content_type=JSON
    )
    assert (r.status_code, r.json()["field"]) == (422, "name")


def test_another_tenants_collaborator_is_refused_like_a_missing_one(
    book, admin, other_admin, client_as
):
    path = f"/api/customers/{book['shanghai'].pk}"
    client = client_as(admin)

    theirs = client.patch(path, {"collaborator_ids": [other_admin.pk]}, content_type=JSON)
    missing = client.patch(path, {"collaborator_ids": [987654321]}, content_type=JSON)

    assert theirs.status_code == missing.status_code == 400
    assert theirs.json() == missing.json()
    assert theirs.json()["field"] == "collaborator_ids"


def test_adding_an_identity_of_another_customer_is_refused_and_suggests_merging(
    book, admin, client_as
):
    r = client_as(admin).post(
        f"/api/customers/{book['shanghai'].pk}/identities",
        {"kind": "phone", "value": "138-1745-0021"},
        content_type=JSON,
    )

    assert r.status_code == 409
    assert (r.json()["code"], r.json()["field"]) == ("identity_taken", "value")
    assert "合并" in r.json()["message"]


def test_adding_an_identity_the_customer_has_is_seen_again_not_an_error(book, admin, client_as):
    phone = Identity.objects.get(customer=book["shanghai"])

    r = client_as(admin).post(
        f"/api/customers/{book['shanghai'].pk}/identities",
        {"kind": "phone", "value": "+86 139 1662 0318", "verified": True},
        content_type=JSON,
    )

    assert r.status_code == 201
    assert r.json()["id"] == phone.pk and r.json()["verified"] is True


def test_a_removed_identity_stays_in_history_and_its_key_is_free_again(book, admin, client_as):
    client = client_as(admin)
    phone = Identity.objects.get(customer=book["shanghai"])

    r = client.delete(f"/api/customers/{book['shanghai'].pk}/identities/{phone.pk}")
    assert r.status_code == 204
    detail = client.get(f"/api/customers/{book['shanghai'].pk}").json()
    assert [(i["id"], i["status"]) for i in detail["identities"]] == [(phone.pk, "removed")]
    assert detail["phone"] is None

    reused = client.post(
        f"/api/customers/{book['guangzhou'].pk}/identities",
        {"kind": "phone", "value": "13916620318"},
        content_type=JSON,
    )
    assert reused.status_code == 201


def test_an_identity_of_another_customer_cannot_be_removed_through_this_one(book, admin, client_as):
    theirs = Identity.objects.get(customer=book["guangzhou"])

    r = client_as(admin).delete(f"/api/customers/{book['shanghai'].pk}/identities/{theirs.pk}")

    assert (r.status_code, r.json()["field"]) == (404, "identity_id")
    theirs.refresh_from_db()
    assert theirs.status == "active"


def test_accepting_and_undoing_a_candidate_over_the_api(book, admin, client_as):
    client = client_as(admin)
    newer = make_customer(admin, "王建国", "13817450027")
    candidate = client.get("/api/customers/merge-candidates").json()["items"][0]

    merged = client.post(
        f"/api/customers/merge-candidates/{candidate['id']}/accept", {}, content_type=JSON
    )
    assert merged.status_code == 201, merged.content
    record = merged.json()
    assert (record["target_id"], record["source_id"]) == (book["pudong"].pk, newer.pk)
    assert ids(client.get("/api/customers", {"q": "王建国"})) == [book["pudong"].pk]

    undone = client.post(f"/api/customers/merges/{record['id']}/undo", {}, content_type=JSON)
    assert undone.status_code == 200
    assert undone.json()["undone_at"] is not None
    assert set(ids(client.get("/api/customers", {"q": "王建国"}))) == {book["pudong"].pk, newer.pk}
    rejected = client.get("/api/customers/merge-candidates", {"status": "rejected"}).json()
    assert [c["id"] for c in rejected["items"]] == [candidate["id"]]


def test_rejecting_a_candidate_keeps_both_customers(book, admin, client_as):
    client = client_as(admin)
    make_customer(admin, "王建国", "13817450027")
    candidate = client.get("/api/customers/merge-candidates").json()["items"][0]

    r = client.post(
        f"/api/customers/merge-candidates/{candidate['id']}/reject",
        {"note": "父子两人"},
        content_type=JSON,
    )

    assert r.status_code == 200
    assert (r.json()["status"], r.json()["note"]) == ("rejected", "父子两人")
    assert client.get("/api/customers/merge-candidates").json()["count"] == 0
    assert Customer.objects.active().count() == 4


def _queries_to_list(client: Any, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path, {"limit": 100}).status_code == 200
    return len(captured)


@pytest.mark.parametrize("path", ["/api/customers", "/api/customers/merge-candidates"])
def test_a_list_costs_the_same_queries_for_few_or_many_rows(admin, client_as, path):
    client = client_as(admin)
    for i in range(3):
        make_customer(admin, f"客户{i}", f"1380000{i:02d}01", f"1390000{i:02d}01")
        make_customer(admin, f"客户{i}", f"1380000{i:02d}02")  # a look-alike: one candidate each
    few = _queries_to_list(client, path)

    for i in range(3, 15):
        make_customer(admin, f"客户{i}", f"1380000{i:02d}01", f"1390000{i:02d}01")
        make_customer(admin, f"客户{i}", f"1380000{i:02d}02")

    assert _queries_to_list(client, path) == few
