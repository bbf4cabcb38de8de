"""Endpoints without login: the public form of a template (definition and submission) and a
ticket's progress behind its token. Rate-limited; nothing internal is ever returned."""

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from jingwei.core.api import In

from .. import services

router = Router(tags=["公开表单与进度"], auth=None)


class PublicFormOut(Schema):
    name: str
    description: str
    form: dict[str, Any]


class PublicSubmitIn(In):
    submission_id: str = Field(
        ..., min_length=8, max_length=64, description="表单页生成的随机编号：重复提交只建一张工单"
    )
    answers: dict[str, Any] = Field(default_factory=dict)
    contact_name: str = Field("", max_length=100)
    contact_phone: str = Field("", max_length=30)
    contact_email: str = Field("", max_length=254)
    website: str = Field("", max_length=200, description="留空（防机器人字段，页面上不可见）")


class PublicSubmitOut(Schema):
    accepted: bool
    number: str | None
    progress_url: str | None


class StepOut(Schema):
    name: str
    state: str = Field(..., description="done 已完成 / current 进行中 / next 下一步 / todo 未开始")
    completed_at: datetime | None


class ProgressOut(Schema):
    number: str
    title: str
    status: str
    status_label: str
    created_at: datetime
    closed_at: datetime | None
    steps: list[StepOut]
    comments: list[dict[str, Any]]
    events: list[dict[str, Any]]


def client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


@router.get("/public/forms/{token}", response=PublicFormOut, summary="公开表单的定义")
def public_form(request: HttpRequest, token: str) -> dict[str, Any]:
    template = services.public_template(token)
    assert template.current_version is not None
    return {
        "name": template.name,
        "description": template.description,
        "form": template.current_version.form,
    }


@router.post(
    "/public/forms/{token}",
    response={201: PublicSubmitOut, 200: PublicSubmitOut},
    summary="提交公开表单（无需登录；限流；同一 submission_id 只建一张工单）",
)
def submit_public_form(
    request: HttpRequest, token: str, payload: PublicSubmitIn
) -> Status[dict[str, Any]]:
    data = payload.model_dump()
    honeypot = data.pop("website")
    created = services.public_form_submit(
        token=token,
        submission=services.PublicSubmission(honeypot=honeypot, **data),
        client_ip=client_ip(request),
    )
    if created is None:  # a bot: told it worked, nothing stored
        return Status(201, {"accepted": True, "number": None, "progress_url": None})
    return Status(
        201 if created.created else 200,
        {
            "accepted": True,
            "number": created.ticket.number,
            "progress_url": services.progress_url(created.ticket),
        },
    )


@router.get("/public/progress/{token}", response=ProgressOut, summary="工单进度（客户可见部分）")
def progress(request: HttpRequest, token: str) -> dict[str, Any]:
    return services.progress_view(token)
