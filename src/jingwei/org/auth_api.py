"""Sign in and out, who am I, and personal API tokens."""

from datetime import datetime

from django.contrib.auth import login, logout
from django.db.models import QuerySet
from django.http import HttpRequest
from django.middleware.csrf import get_token
from ninja import Field, Router, Schema, Status
from ninja.utils import check_csrf

from jingwei.core import idempotency
from jingwei.core.api import AuthedRequest, In, Moment, Password
from jingwei.core.errors import Forbidden

from . import auth
from .models import ApiToken, Employee
from .scope import actor_for

router = Router(tags=["登录与令牌"])


class LoginIn(In):
    username: str = Field(..., min_length=1, max_length=150)
    password: Password


class GrantOut(Schema):
    code: str
    scope: str


class MeOut(Schema):
    employee_id: int
    name: str
    tenant_id: int
    tenant_name: str
    department_id: int | None
    region_id: int | None
    permissions: list[str]
    grants: list[GrantOut]


class CsrfOut(Schema):
    csrf_token: str


def _me(employee: Employee) -> MeOut:
    actor = actor_for(employee)
    return MeOut(
        employee_id=employee.pk,
        name=employee.name,
        tenant_id=employee.tenant_id,
        tenant_name=employee.tenant.name,
        department_id=employee.department_id,
        region_id=employee.region_id,
        permissions=sorted(actor.codes),
        grants=[GrantOut(code=g.code, scope=g.scope) for g in actor.grants],
    )


@router.get(
    "/csrf", response=CsrfOut, auth=None, summary="取得 CSRF 令牌（控制台写操作需带 X-CSRFToken）"
)
def csrf(request: HttpRequest) -> CsrfOut:
    return CsrfOut(csrf_token=get_token(request))


@router.post("/login", response=MeOut, auth=None, summary="用户名密码登录（会话）")
def sign_in(request: HttpRequest, payload: LoginIn) -> MeOut:
    # Login CSRF: without it another site could sign a victim into the attacker's account.
    if check_csrf(request):
        raise Forbidden("CSRF 校验失败：请先获取 /api/auth/csrf", code="csrf_failed")
    employee = auth.password_login(
        request=request, username=payload.username, password=payload.password
    )
    login(request, employee.user, backend="jingwei.org.auth.ThrottledModelBackend")
    return _me(employee)


@router.post("/logout", response={204: None}, summary="退出登录")
def sign_out(request: AuthedRequest) -> Status[None]:
    logout(request)
    return Status(204, None)


@router.get("/me", response=MeOut, summary="当前用户与权限")
def me(request: AuthedRequest) -> MeOut:
    employee = Employee.objects.select_related("tenant").get(
        pk=request.actor.employee_id, tenant_id=request.actor.tenant_id
    )
    return _me(employee)


class TokenIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    expires_at: Moment | None = None


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(..., description="完整令牌，只显示这一次")


@router.get("/tokens", response=list[TokenOut], summary="我的 API 令牌")
def list_tokens(request: AuthedRequest) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(
        tenant_id=request.actor.tenant_id, employee_id=request.actor.employee_id
    )


@router.post("/tokens", response={201: TokenCreatedOut}, summary="创建 API 令牌（只显示一次）")
def create_token(request: AuthedRequest, payload: TokenIn) -> Status[dict[str, object]]:
    issued = auth.token_issue(actor=request.actor, name=payload.name, expires_at=payload.expires_at)
    idempotency.mark_unrepeatable(request)  # the secret is shown once, never stored for a replay
    return Status(201, {**TokenOut.from_orm(issued.token).model_dump(), "token": issued.secret})


@router.post("/tokens/{token_id}/revoke", response=TokenOut, summary="撤销 API 令牌")
def revoke_token(request: AuthedRequest, token_id: int) -> ApiToken:
    return auth.token_revoke(actor=request.actor, token_id=token_id)
