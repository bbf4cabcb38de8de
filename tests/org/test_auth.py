"""Signing in: sessions with CSRF, throttled password login, personal tokens, frozen accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.test import Client
from django.utils import timezone

from jingwei.org.models import ApiToken, EmployeeStatus

from ..factories import FAST_PASSWORD

pytestmark = pytest.mark.django_db

ME = "/api/auth/me"


def login(client: Client, username: str, password: str):
    return client.post(
        "/api/auth/login",
        {"username": username, "password": password},
        content_type="application/json",
    )


def issue_token(client: Client, name: str = "集成", **extra) -> dict:
    r = client.post("/api/auth/tokens", {"name": name, **extra}, content_type="application/json")
    assert r.status_code == 201, r.content
    return r.json()


def test_login_with_password_opens_a_session_that_knows_the_permissions(east_manager):
    client = Client()

    r = login(client, east_manager.user.username, FAST_PASSWORD)

    assert r.status_code == 200
    assert r.json()["name"] == "张伟"
    me = client.get(ME).json()
    assert "customer.view_pii" in me["permissions"]
    assert {g["scope"] for g in me["grants"]} == {"region"}


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(east_manager):
    r = login(Client(), east_manager.user.username, "wrong-password")

    assert r.status_code == 401
    assert r.json() == {"code": "bad_credentials", "message": "用户名或密码错误", "field": None}


def test_after_five_failures_even_the_right_password_waits(east_manager, shanghai_agent, settings):
    settings.LOGIN_MAX_FAILURES = 5
    client = Client()
    for _ in range(5):
        assert login(client, east_manager.user.username, "wrong").status_code == 401

    r = login(client, east_manager.user.username, FAST_PASSWORD)

    assert r.status_code == 429
    assert r.json()["code"] == "login_throttled"
    # Another account from the same address is not locked by someone else's typos.
    assert login(Client(), shanghai_agent.user.username, FAST_PASSWORD).status_code == 200


def test_new_passwords_are_hashed_with_argon2(admin, client_as):
    r = client_as(admin).post(
        "/api/org/employees",
        {"username": "newbie", "password": "Long-enough-42", "employee_no": "N001", "name": "新人"},
        content_type="application/json",
    )

    assert r.status_code == 201, r.content
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="newbie")
    assert identify_hasher(user.password).algorithm == "argon2"
    assert login(Client(), "newbie", "Long-enough-42").status_code == 200


def test_session_writes_need_the_csrf_token(east_manager, admin):
    client = Client(enforce_csrf_checks=True)
    token = client.get("/api/auth/csrf").json()["csrf_token"]
    without = login(client, admin.user.username, FAST_PASSWORD)
    signed_in = client.post(
        "/api/auth/login",
        {"username": admin.user.username, "password": FAST_PASSWORD},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert without.status_code == 403  # login CSRF: no token, no session
    assert signed_in.status_code == 200
    token = client.cookies["csrftoken"].value  # rotated at sign-in

    refused = client.post(
        "/api/org/departments", {"name": "新部门"}, content_type="application/json"
    )
    accepted = client.post(
        "/api/org/departments",
        {"name": "新部门"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )

    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    assert accepted.status_code == 201


def test_a_personal_token_is_shown_once_and_stored_only_as_a_digest(east_manager, client_as):
    client = client_as(east_manager)

    created = issue_token(client)
    listed = client.get("/api/auth/tokens").json()

    secret = created["token"]
    assert secret.startswith("jw_")
    assert all("token" not in row for row in listed)
    row = ApiToken.objects.get(pk=created["id"])
    assert secret not in {row.digest, row.prefix, row.name}
    r = Client().get(ME, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert r.status_code == 200
    assert r.json()["employee_id"] == east_manager.pk


def test_token_requests_need_no_csrf_token(admin, client_as):
    secret = issue_token(client_as(admin))["token"]

    r = Client(enforce_csrf_checks=True).post(
        "/api/org/departments",
        {"name": "集成建的部门"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )

    assert r.status_code == 201


def test_a_revoked_or_expired_token_stops_working(east_manager, client_as):
    client = client_as(east_manager)
    revoked = issue_token(client, "旧令牌")
    expiring = issue_token(
        client, "短期", expires_at=(timezone.now() + timedelta(hours=1)).isoformat()
    )

    assert client.post(f"/api/auth/tokens/{revoked['id']}/revoke").status_code == 200
    ApiToken.objects.filter(pk=expiring["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    for secret in (revoked["token"], expiring["token"]):
        r = Client().get(ME, HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert r.status_code == 401
        assert r.json()["code"] == "bad_token"


def test_garbage_authorization_header_is_a_clear_401(db):
    for header in ("Bearer nonsense", "Basic abc", "Bearer "):
        r = Client().get(ME, HTTP_AUTHORIZATION=header)
        assert r.status_code == 401
        assert r.json()["code"] == "bad_token"


def test_someone_elses_token_cannot_be_revoked(east_manager, shanghai_agent, client_as):
    theirs = issue_token(client_as(shanghai_agent))

    r = client_as(east_manager).post(f"/api/auth/tokens/{theirs['id']}/revoke")

    assert r.status_code == 404
    assert ApiToken.objects.get(pk=theirs["id"]).revoked_at is None


def test_a_frozen_account_can_neither_sign_in_nor_use_the_api(east_manager, client_as):
    client = client_as(east_manager)
    secret = issue_token(client)["token"]
    east_manager.frozen_at = timezone.now()
    east_manager.frozen_reason = "导出异常"
    east_manager.save()

    by_password = login(Client(), east_manager.user.username, FAST_PASSWORD)
    by_token = Client().get(ME, HTTP_AUTHORIZATION=f"Bearer {secret}")
    by_session = client.get(ME)

    assert by_password.status_code == 403
    assert by_password.json()["code"] == "account_frozen"
    assert by_token.status_code == 403
    assert by_token.json()["code"] == "account_frozen"
    assert by_session.status_code == 401  # the session was ended at its next request


def test_an_employee_who_left_cannot_sign_in(shanghai_agent):
    shanghai_agent.status = EmployeeStatus.LEFT
    shanghai_agent.save()

    r = login(Client(), shanghai_agent.user.username, FAST_PASSWORD)

    assert r.status_code == 403
    assert r.json()["code"] == "account_inactive"


def test_logout_ends_the_session(east_manager, client_as):
    client = client_as(east_manager)

    assert client.post("/api/auth/logout").status_code == 204
    assert client.get(ME).status_code == 401


def test_a_password_is_taken_exactly_as_typed(admin, client_as):
    created = client_as(admin).post(
        "/api/org/employees",
        {
            "username": "spacey",
            "password": "  spaces-around-42  ",
            "employee_no": "S001",
            "name": "空格",
        },
        content_type="application/json",
    )
    assert created.status_code == 201

    assert login(Client(), "spacey", "spaces-around-42").status_code == 401
    assert login(Client(), "spacey", "  spaces-around-42  ").status_code == 200


def test_a_token_cannot_mint_another_token(east_manager, client_as):
    secret = issue_token(
        client_as(east_manager),
        "短期",
        expires_at=(timezone.now() + timedelta(minutes=5)).isoformat(),
    )["token"]

    r = Client().post(
        "/api/auth/tokens",
        {"name": "永久"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )

    assert r.status_code == 403
    assert r.json()["code"] == "token_cannot_mint"
    assert ApiToken.objects.filter(employee=east_manager).count() == 1


def test_a_deactivated_login_loses_token_access(east_manager, client_as):
    secret = issue_token(client_as(east_manager))["token"]
    east_manager.user.is_active = False
    east_manager.user.save()

    r = Client().get(ME, HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert r.status_code == 403
    assert r.json()["code"] == "account_inactive"


def test_the_admin_login_page_is_throttled_too(east_manager, settings):
    settings.LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(3):
        client.post("/admin/login/", {"username": east_manager.user.username, "password": "wrong"})

    r = login(Client(), east_manager.user.username, FAST_PASSWORD)

    assert r.status_code == 429


def test_a_retried_token_creation_never_replays_the_secret(east_manager, client_as):
    client = client_as(east_manager)

    def create():
        return client.post(
            "/api/auth/tokens",
            {"name": "重试"},
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="tok-1",
        )

    first, retry = create(), create()

    assert first.status_code == 201
    assert retry.status_code == 409
    assert retry.json()["code"] == "idempotent_replay_unavailable"
    assert first.json()["token"] not in retry.content.decode()
    from jingwei.core.models import IdempotencyKey

    assert all(
        first.json()["token"].encode() not in bytes(row.response_body or b"")
        for row in IdempotencyKey.objects.all()
    )
