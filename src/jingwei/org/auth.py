"""Signing in: passwords (argon2, throttled), sessions with CSRF, and personal API tokens."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from ninja.security.base import AuthBase
from ninja.utils import check_csrf

from jingwei.audit.services import audit_record, snapshot
from jingwei.core import idempotency
from jingwei.core.errors import DomainError, Forbidden, NotFound, Throttled, Unauthenticated

from .models import ApiToken, Employee
from .scope import Actor, actor_for

TOKEN_PREFIX = "jw_"


def _client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _failure_keys(username: str, ip: str) -> list[str]:
    name = hashlib.sha256(username.lower().encode()).hexdigest()[:32]
    return [f"login-fail:user:{name}", f"login-fail:ip:{ip}"]


def _limits() -> list[int]:
    # An address gets more room than one account: an office shares one address.
    return [settings.LOGIN_MAX_FAILURES, settings.LOGIN_MAX_FAILURES * 4]


def _count_attempt(keys: list[str]) -> bool:
    """Count this attempt first, then compare: parallel guesses cannot all slip under the limit.
    Returns whether the attempt is over the limit (and must not even be checked)."""
    over = False
    for key, limit in zip(keys, _limits(), strict=True):
        cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
            count = 1
        over = over or count > limit
    return over


def _forgive(keys: list[str]) -> None:
    """A successful sign-in clears the account's count and takes this attempt off the address's."""
    cache.delete(keys[0])
    with contextlib.suppress(ValueError):
        cache.decr(keys[1])


class ThrottledModelBackend(ModelBackend):
    """Django's password check, throttled per account and per address, for every sign-in path
    (the API and the Django admin both authenticate through here)."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if request is None or username is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        keys = _failure_keys(username, _client_ip(request))
        if _count_attempt(keys):
            request.login_throttled = True  # type: ignore[attr-defined]
            raise PermissionDenied  # stops Django trying other backends
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            _forgive(keys)
        return user


def ensure_may_sign_in(employee: Employee | None) -> Employee:
    if employee is None:
        raise Forbidden("该账号未关联员工档案", code="no_employee")
    if employee.frozen_at is not None:
        raise Forbidden(f"账号已冻结：{employee.frozen_reason}", code="account_frozen")
    if employee.status != "active" or not employee.user.is_active:
        raise Forbidden("账号已停用（员工已离职）", code="account_inactive")
    if not employee.tenant.is_active:
        raise Forbidden("所属企业已停用", code="tenant_inactive")
    return employee


def employee_of(user_id: int) -> Employee | None:
    return (
        Employee.objects.select_related("tenant", "department", "region", "user")
        .filter(user_id=user_id)
        .first()
    )


def password_login(*, request: HttpRequest, username: str, password: str) -> Employee:
    """Check a username and password. After LOGIN_MAX_FAILURES attempts without success in
    LOGIN_LOCKOUT_SECONDS, that account (and, at four times that, that address) is refused until
    the window passes (see ThrottledModelBackend)."""
    user = authenticate(request, username=username, password=password)
    if getattr(request, "login_throttled", False):
        raise Throttled("登录失败次数过多，请稍后再试", code="login_throttled")
    if user is None:
        raise Unauthenticated("用户名或密码错误", code="bad_credentials")
    employee = ensure_may_sign_in(employee_of(user.pk))
    with transaction.atomic():
        audit_record(
            actor=actor_for(employee),
            tenant_id=employee.tenant_id,
            action="auth.login",
            subject=employee,
            ip=_client_ip(request),
        )
    return employee


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def token_issue(*, actor: Actor, name: str, expires_at: datetime | None = None) -> IssuedToken:
    if actor.via_token:
        # A leaked short-lived token must not be able to mint itself a long-lived successor.
        raise Forbidden("API 令牌不能用来创建新令牌，请登录控制台创建", code="token_cannot_mint")
    if not name.strip():
        raise DomainError("请填写令牌名称", code="required", field="name")
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError("到期时间必须晚于现在", code="invalid_period", field="expires_at")
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic(durable=True):
        token = ApiToken.objects.create(
            tenant_id=actor.tenant_id,
            employee_id=actor.employee_id,
            name=name.strip(),
            prefix=prefix,
            digest=_digest(secret),
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="auth.token.created",
            subject=token,
            after=snapshot(token),
        )
    return IssuedToken(token, secret)


def token_revoke(*, actor: Actor, token_id: int) -> ApiToken:
    with transaction.atomic(durable=True):
        token = (
            ApiToken.objects.select_for_update()
            .filter(tenant_id=actor.tenant_id, employee_id=actor.employee_id, pk=token_id)
            .first()
        )
        if token is None:
            raise NotFound("令牌不存在", field="id")
        if token.revoked_at is None:
            before = snapshot(token)
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                tenant_id=actor.tenant_id,
                action="auth.token.revoked",
                subject=token,
                before=before,
                after=snapshot(token),
            )
        return token


def token_authenticate(secret: str) -> Employee:
    if not secret.startswith(TOKEN_PREFIX):
        raise Unauthenticated("API 令牌无效", code="bad_token")
    now = timezone.now()
    token = (
        ApiToken.objects.select_related(
            "employee__tenant", "employee__department", "employee__region"
        )
        .filter(digest=_digest(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        raise Unauthenticated("API 令牌无效、已撤销或已过期", code="bad_token")
    employee = ensure_may_sign_in(token.employee)
    # Touch at most once a minute: a busy integration should not write on every call.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return employee


class ActorAuth(AuthBase):
    """Ninja auth: a personal token (`Authorization: Bearer jw_…`) or the console's session.

    Session-authenticated writes must carry the CSRF token; token requests need none (no cookie
    rides along). Sets `request.actor`. A frozen or departed account is refused either way.
    """

    openapi_type = "http"
    openapi_scheme = "bearer"
    openapi_description = (
        "个人 API 令牌（Authorization: Bearer jw_…）；控制台使用会话 Cookie + X-CSRFToken"
    )

    def __call__(self, request: HttpRequest) -> Actor | None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Unauthenticated("Authorization 头应为 Bearer <令牌>", code="bad_token")
            employee = token_authenticate(secret.strip())
            via_token = True
        else:
            via_token = False
            user = getattr(request, "user", None)
            if user is None or not user.is_authenticated:
                return None
            if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE") and check_csrf(request):
                raise Forbidden("CSRF 校验失败：请刷新页面后重试", code="csrf_failed")
            employee = ensure_may_sign_in(employee_of(user.pk))
        actor = actor_for(employee)
        actor.via_token = via_token
        request.actor = actor  # type: ignore[attr-defined]
        idempotency.claim(request, actor)
        return actor
