"""Journey A as far as tickets reach today: a repair ticket walks the shipped 7-step SOP from
受理 to 归档 (parts are reserved at 派单 and consumed at acceptance by the parts library; the
settlement step passes, recorded as deferred until settlement exists), the ticket ends resolved,
and its progress page shows every step done. Also: the region
and contact a form answers when nobody states them."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from jingwei.core.timers import fire_due
from jingwei.flows.models import Instance
from jingwei.tickets.models import Ticket

from .test_tickets import complete_step, create, open_tasks


def test_a_repair_walks_the_sop_to_the_end(shipped, org, admin, client_as):
    ticket = create(client_as(admin), org, region_id=org.pudong.pk)
    complete_step(admin, ticket["id"], "受理")
    complete_step(admin, ticket["id"], "派单")  # reserve_parts: nothing listed, nothing held
    assert [t.name for t in open_tasks(ticket["id"])] == ["处理"]
    complete_step(admin, ticket["id"], "处理")
    complete_step(admin, ticket["id"], "验收", outcome="reject")  # the customer rejects once
    complete_step(admin, ticket["id"], "处理")
    complete_step(admin, ticket["id"], "验收", outcome="approve")
    fire_due(now=timezone.now() + timedelta(days=1, minutes=1))  # 回访 a day after completion
    complete_step(admin, ticket["id"], "回访")
    complete_step(admin, ticket["id"], "结算")

    done = Ticket.objects.get(pk=ticket["id"])
    assert (done.status, done.stage) == ("resolved", "已完成")
    assert done.closed_at is not None
    instance = Instance.objects.get(pk=done.instance_id)
    assert [d["action"] for d in instance.data["deferred_actions"]] == ["post_settlement_line"]
    assert instance.data["parts_reservation"]["short"] == []  # the form listed no parts
    page = Client().get(f"/api/public/progress/{done.progress_token}").json()
    assert page["status"] == "resolved"
    assert {s["state"] for s in page["steps"]} == {"done"}
    assert [s["name"] for s in page["steps"]][:3] == ["受理", "派单", "处理"]


def test_the_service_region_answered_becomes_the_tickets_region(shipped, org, admin, client_as):
    ticket = create(client_as(admin), org)  # no region_id, a new customer without one
    assert ticket["region_id"] == org.pudong.pk


def test_a_guardian_phone_is_the_contact_of_a_course_trial(shipped, org, admin, client_as):
    appointment = (timezone.now() + timedelta(days=3)).isoformat()
    trial = {
        "student_name": "韩梅梅",
        "age": 8,
        "guardian_phone": "139 1662 0318",
        "courses": ["美术"],
        "appointment": appointment,
        "campus": "浦东校区",
    }
    r = client_as(admin).post(
        "/api/tickets",
        {"template": "course_trial", "answers": trial, "region_id": org.pudong.pk},
        content_type="application/json",
    )
    assert r.status_code == 201, r.json()
    ticket = Ticket.objects.select_related("customer").get(pk=r.json()["id"])
    assert ticket.contact_phone == "13916620318"
    assert ticket.customer is not None  # the guardian's phone found or made the customer
