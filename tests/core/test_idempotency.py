"""A retried write with the same Idempotency-Key has one effect and gets the same answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jingwei.core.models import IdempotencyKey
from jingwei.org.models import Department

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


def _hash_of(method: str, path: str, body: bytes) -> str:
    import hashlib

    return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()
