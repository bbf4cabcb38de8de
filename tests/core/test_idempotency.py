"""A retried write with the same Idempotency-Key has one effect and gets the same answer."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory
from django.utils import timezone

from jingwei.core import idempotency
from jingwei.core.models import IdempotencyKey
from jingwei.org.models import Department
from jingwei.org.scope import actor_for

pytestmark = pytest.mark.django_db


def post(client, body, key):
    return client.post(
        "/api/org/departments", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_a_retry_with_the_same_key_creates_nothing_new_and_answers_the_same(admin, client_as):
    client = client_as(admin)

    first = post(client, {"name": "重试部门"}, "k-1")
    second = post(client, {"name": "重试部门"}, "k-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Department.objects.filter(name="重试部门").count() == 1


def test_the_same_key_with_a_different_body_is_refused(admin, client_as):
    client = client_as(admin)
    post(client, {"name": "甲"}, "k-2")

    r = post(client, {"name": "乙"}, "k-2")

    assert r.status_code == 400
    assert r.json()["code"] == "idempotency_key_reused"
    assert r.json()["field"] == "Idempotency-Key"
    assert not Department.objects.filter(name="乙").exists()


def test_a_retry_while_the_first_is_still_running_waits(admin, client_as):
    client = client_as(admin)
    IdempotencyKey.objects.create(
        tenant=admin.tenant,
        employee=admin,
        key="k-3",
        method="POST",
        path="/api/org/departments",
        request_hash=_hash_of("POST", "/api/org/departments", b'{"name": "\\u4e19"}'),
        created_at=timezone.now(),
    )

    r = post(client, {"name": "丙"}, "k-3")

    assert r.status_code == 409
    assert r.json()["code"] == "idempotency_in_progress"
    assert not Department.objects.filter(name="丙").exists()


def test_an_abandoned_claim_is_taken_over_after_it_goes_stale(admin, client_as, settings):
    client = client_as(admin)
    IdempotencyKey.objects.create(
        tenant=admin.tenant,
        employee=admin,
        key="k-4",
        method="POST",
        path="/api/org/departments",
        request_hash=_hash_of("POST", "/api/org/departments", b'{"name": "\\u4e01"}'),
        created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS + 1),
    )

    r = post(client, {"name": "丁"}, "k-4")

    assert r.status_code == 201
    assert Department.objects.filter(name="丁").count() == 1


def test_keys_are_per_person(admin, org, client_as):
    from ..factories import EmployeeFactory, grant

    colleague = EmployeeFactory(tenant=org.tenant, department=org.hq)
    grant(colleague, ["org.manage", "org.view"], "tenant")

    post(client_as(admin), {"name": "戊"}, "shared-key")
    r = post(client_as(colleague), {"name": "戊"}, "shared-key")

    assert r.status_code == 201
    assert "Idempotent-Replayed" not in r
    assert Department.objects.filter(name="戊").count() == 2


def test_an_error_answer_is_replayed_too(admin, client_as):
    client = client_as(admin)

    first = post(client, {"name": "己", "parent_id": 999999}, "k-5")
    second = post(client, {"name": "己", "parent_id": 999999}, "k-5")

    assert first.status_code == second.status_code == 400
    assert second.json() == first.json()


def test_a_secret_shown_once_is_not_stored_and_a_retry_is_told_to_use_a_new_key(admin):
    actor = actor_for(admin)

    def issue_secret(request: HttpRequest) -> HttpResponse:
        idempotency.mark_unrepeatable(request)
        return JsonResponse({"token": "jw_secret_once"}, status=201)

    middleware = idempotency.IdempotencyMiddleware(issue_secret)
    first_request = _keyed_post("/api/tokens", {"name": "集成"}, "k-6")
    idempotency.claim(first_request, actor)

    # The caller sees the secret once
    first = middleware(first_request)
    assert first.status_code == 201
    assert b"jw_secret_once" in first.content
    # But the key does not keep it
    row = IdempotencyKey.objects.get(key="k-6")
    assert b"jw_secret_once" not in bytes(row.response_body or b"")

    # And a retry is refused in its place, telling the client what to do
    with pytest.raises(idempotency.Replay) as replay:
        idempotency.claim(_keyed_post("/api/tokens", {"name": "集成"}, "k-6"), actor)
    retry = replay.value.response()
    assert retry.status_code == 409
    assert b"jw_secret_once" not in retry.content
    assert json.loads(retry.content) == {
        "code": "idempotent_replay_unavailable",
        "message": "这个结果只显示一次，无法重放；请用新的 Idempotency-Key 重新请求",
        "field": "Idempotency-Key",
    }


def test_expired_keys_of_every_tenant_are_swept_by_any_claim(
    admin, other_admin, client_as, settings
):
    expired = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS + 1)
    old = _stored_key(other_admin, "old", created_at=expired)
    fresh = _stored_key(other_admin, "fresh", created_at=timezone.now())

    post(client_as(admin), {"name": "庚"}, "k-7")

    assert not IdempotencyKey.objects.filter(pk=old.pk).exists()
    assert IdempotencyKey.objects.filter(pk=fresh.pk).exists()


def test_a_claim_sweeps_a_bounded_batch_oldest_rows_first(admin, client_as, settings, monkeypatch):
    monkeypatch.setattr(idempotency, "SWEEP_BATCH", 2)
    expired = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS + 1)
    rows = [_stored_key(admin, f"old-{n}", created_at=expired) for n in range(3)]

    post(client_as(admin), {"name": "辛"}, "k-8")

    left = IdempotencyKey.objects.filter(key__startswith="old-")
    assert list(left.values_list("pk", flat=True)) == [rows[2].pk]


def test_a_claim_freed_by_a_server_error_just_before_the_lookup_answers_409(
    admin, client_as, monkeypatch
):
    # The first request held the key (our insert collides) and then failed with a 5xx, which
    # deleted its row before we looked it up.
    def collide(**kwargs):
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(IdempotencyKey.objects, "create", collide)

    r = post(client_as(admin), {"name": "壬"}, "k-9")

    assert r.status_code == 409
    assert r.json()["code"] == "idempotency_in_progress"
    assert not Department.objects.filter(name="壬").exists()


def test_the_same_key_with_another_query_string_is_refused(admin, client_as):
    client = client_as(admin)
    path = "/api/org/departments"
    first = client.post(
        f"{path}?source=a",
        {"name": "癸"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k-10",
    )

    r = client.post(
        f"{path}?source=b",
        {"name": "癸"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k-10",
    )

    assert first.status_code == 201
    assert r.status_code == 400
    assert r.json()["code"] == "idempotency_key_reused"
    assert Department.objects.filter(name="癸").count() == 1


def _keyed_post(path: str, body: dict, key: str) -> HttpRequest:
    return RequestFactory().post(
        path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def _stored_key(employee, key: str, *, created_at) -> IdempotencyKey:
    return IdempotencyKey.objects.create(
        tenant=employee.tenant,
        employee=employee,
        key=key,
        method="POST",
        path="/api/org/departments",
        request_hash="0" * 64,
        created_at=created_at,
    )


def _hash_of(method: str, path: str, body: bytes) -> str:
    import hashlib

    return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()
