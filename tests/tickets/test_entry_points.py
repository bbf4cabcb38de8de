"""The entry points without a logged-in person: the public form (no login, rate-limited,
honeypot, size limit, one ticket per submission) and the WeCom-message hook (one ticket per
msgid; a message naming the customer's own ticket number is added to it)."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client, override_settings

from jingwei.customers.identities import IdentityInput
from jingwei.customers.services import customer_resolve
from jingwei.tickets import services
from jingwei.tickets.models import Ticket, TicketComment

REPAIR = {
    "contact_name": "王建国",
    "contact_phone": "138 1745 0021",
    "service_type": "售后服务",
    "fault": "空调不制冷了，外机不转",
    "warranty": "过保",
    "service_address": "上海市浦东新区世纪大道 1 号",
}


@pytest.fixture
def public_token(shipped, admin, actor_of) -> str:
    template = services.template_publish_form(
        actor=actor_of(admin), template_id=shipped["after_sales_repair"].pk, enabled=True
    )
    return template.public_token


def submit(token: str, answers: dict, **extra) -> tuple[int, dict]:
    body = {"submission_id": extra.pop("submission_id", uuid.uuid4().hex), "answers": answers}
    body.update(extra)
    r = Client().post(f"/api/public/forms/{token}", body, content_type="application/json")
    return r.status_code, r.json()


def repair_answers(org) -> dict:
    return {**REPAIR, "service_region": [org.east.pk, org.shanghai.pk, org.pudong.pk]}


def test_the_public_form_needs_no_login_and_gives_a_progress_link(public_token, org):
    r = Client().get(f"/api/public/forms/{public_token}")
    assert r.status_code == 200
    assert r.json()["form"]["ui"]["fault"]["label"] == "故障现象"

    status, body = submit(public_token, repair_answers(org))
    assert status == 201, body
    ticket = Ticket.objects.get(number=body["number"])
    assert ticket.source == "public_form"
    assert body["progress_url"].endswith(f"/p/{ticket.progress_token}")
    assert Client().get(f"/api/public/progress/{ticket.progress_token}").status_code == 200


def test_a_double_submission_makes_one_ticket(public_token, org):
    first = submit(public_token, repair_answers(org), submission_id="same-page-load-1")
    second = submit(public_token, repair_answers(org), submission_id="same-page-load-1")
    assert (first[0], second[0]) == (201, 200)
    assert first[1]["number"] == second[1]["number"]
    assert Ticket.objects.count() == 1


def test_mistakes_are_named_field_by_field_in_chinese(public_token, org):
    answers = {**repair_answers(org)}
    del answers["fault"]
    status, body = submit(public_token, answers)
    assert status == 422
    assert {"field": "answers.fault", "code": "required", "message": "请填写故障现象"} in body[
        "errors"
    ]
    assert not Ticket.objects.exists()


def test_a_filled_honeypot_is_told_it_worked_and_nothing_is_stored(public_token, org):
    status, body = submit(public_token, repair_answers(org), website="http://spam.example")
    assert status == 201 and body == {"accepted": True, "number": None, "progress_url": None}
    assert not Ticket.objects.exists()


@override_settings(PUBLIC_FORM_RATE_LIMIT=3, PUBLIC_FORM_RATE_WINDOW=60)
def test_submissions_are_rate_limited_per_address(public_token, org):
    statuses = [submit(public_token, repair_answers(org))[0] for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert Ticket.objects.count() == 3


def test_an_oversized_form_is_refused(public_token, org):
    status, body = submit(public_token, {**repair_answers(org), "fault": "长" * 40000})
    assert (status, body["code"], body["field"]) == (422, "too_large", "answers")
    assert not Ticket.objects.exists()


def test_a_closed_or_unknown_form_reads_as_missing(public_token, shipped, admin, actor_of, org):
    assert Client().get("/api/public/forms/not-a-token").status_code == 404
    services.template_publish_form(
        actor=actor_of(admin), template_id=shipped["after_sales_repair"].pk, enabled=False
    )
    assert Client().get(f"/api/public/forms/{public_token}").status_code == 404
    assert submit(public_token, repair_answers(org))[0] == 404


# --- the WeCom-message hook ----------------------------------------------------------------


def message(org, msgid: str, text: str, userid: str = "wmWangJianguo") -> services.WecomMessage:
    return services.WecomMessage(
        tenant_id=org.tenant.pk,
        external_userid=userid,
        msgid=msgid,
        text=text,
        template_key="after_sales_repair",
        name="王建国",
    )


def test_a_wecom_message_opens_a_ticket_for_the_contact(shipped, org):
    wang = customer_resolve(
        actor=None,
        tenant_id=org.tenant.pk,
        identities=[IdentityInput(kind="wecom", value="wmWangJianguo")],
        profile={"name": "王建国", "region_id": org.pudong.pk},
    ).customer
    ticket = services.wecom_message_receive(message(org, "m-1", "空调不制冷了\n型号 KFR-35GW"))
    assert ticket.source == "wecom" and ticket.customer_id == wang.pk
    assert ticket.title == "空调不制冷了"
    assert ticket.region_id == org.pudong.pk
    [comment] = TicketComment.objects.filter(ticket=ticket)
    assert comment.visibility == "public" and "KFR-35GW" in comment.body


def test_the_same_msgid_twice_changes_nothing(shipped, org):
    first = services.wecom_message_receive(message(org, "m-1", "空调不制冷了"))
    again = services.wecom_message_receive(message(org, "m-1", "空调不制冷了"))
    assert first.pk == again.pk
    assert (Ticket.objects.count(), TicketComment.objects.count()) == (1, 1)


def test_a_message_naming_his_own_ticket_is_added_to_it(shipped, org):
    ticket = services.wecom_message_receive(message(org, "m-1", "空调不制冷了"))
    follow = services.wecom_message_receive(message(org, "m-2", f"{ticket.number} 明天上午在家"))
    assert follow.pk == ticket.pk
    assert TicketComment.objects.filter(ticket=ticket).count() == 2
    # someone else naming that number opens their own ticket instead
    other = services.wecom_message_receive(
        message(org, "m-3", f"{ticket.number} 我也坏了", userid="wmSomeoneElse")
    )
    assert other.pk != ticket.pk
