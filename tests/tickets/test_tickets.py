"""Tickets through the HTTP API as a user meets them: creating one (numbers, retries, form errors,
the customer found or made), the stage following its flow, closing, the timeline, comments and
watchers, assignment, attachments, and who sees which ticket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from jingwei.customers.models import Customer
from jingwei.flows import services as flows
from jingwei.flows.models import Instance, InstanceStatus, Task, TaskStatus
from jingwei.notify.models import Notification
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for
from jingwei.tickets.models import Attachment, Ticket, TicketCounter
from jingwei.tickets.services import qr_png

from ..customers.factories import make_customer
from ..factories import EmployeeFactory, grant

# --- helpers shared by the ticket API tests -------------------------------------------------

PHONE = "13812345678"


def answers(org: Any, **changes: Any) -> dict[str, Any]:
    """Valid answers of the shipped after-sales form (售后服务, a 浦东 address)."""
    given: dict[str, Any] = {
        "contact_name": "李雷",
        "contact_phone": PHONE,
        "service_type": "售后服务",
        "fault": "空调不制冷，外机不转",
        "warranty": "过保",
        "service_region": [org.east.pk, org.shanghai.pk, org.pudong.pk],
        "service_address": "上海市浦东新区世纪大道 100 号",
    }
    given.update(changes)
    return {k: v for k, v in given.items() if v is not None}


def post(client: Client, url: str, body: Any = None, **headers: str) -> Any:
    return client.post(url, body or {}, content_type="application/json", headers=headers)


def patch(client: Client, url: str, body: Any) -> Any:
    return client.patch(url, body, content_type="application/json")


def create(client: Client, org: Any, *, status: int = 201, **body: Any) -> dict[str, Any]:
    """POST /api/tickets with the after-sales template; the created ticket's JSON."""
    body.setdefault("template", "after_sales_repair")
    if "answers" not in body:
        body["answers"] = answers(org)
    r = post(client, "/api/tickets", body)
    assert r.status_code == status, r.json()
    data: dict[str, Any] = r.json()
    return data


def today_prefix() -> str:
    return f"GD{timezone.localdate():%Y%m%d}"


def open_tasks(ticket_id: int) -> list[Task]:
    instance_id = Ticket.objects.values_list("instance_id", flat=True).get(pk=ticket_id)
    return list(Task.objects.filter(instance_id=instance_id or 0, status=TaskStatus.OPEN))


def complete_step(employee: Employee, ticket_id: int, name: str, outcome: str = "") -> None:
    """The person completes the ticket's open flow step called `name`."""
    (task,) = [t for t in open_tasks(ticket_id) if t.name == name]
    flows.task_complete(actor=actor_for(employee), task_id=task.pk, outcome=outcome)


def png_bytes() -> bytes:
    return qr_png("故障照片")


def upload(client: Client, content: bytes, name: str = "故障.png", kind: str = "image/png") -> Any:
    return client.post(
        "/api/tickets/attachments", {"file": SimpleUploadedFile(name, content, content_type=kind)}
    )


@pytest.fixture
def media(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def other_shipped(other_org: Any, other_admin: Any) -> Any:
    from jingwei.flows.demo import load_shipped_flows
    from jingwei.tickets.demo import load_shipped_templates

    load_shipped_flows(other_org.tenant.pk)
    return {t.key: t for t in load_shipped_templates(other_org.tenant.pk)}


# --- creating ---------------------------------------------------------------------------------


def test_tickets_are_numbered_by_local_day_in_sequence(org, admin, shipped, client_as):
    c = client_as(admin)

    first = create(c, org)
    second = create(c, org)

    assert first["number"] == f"{today_prefix()}-0001"
    assert second["number"] == f"{today_prefix()}-0002"
    assert first["status"] == "open"
    assert first["title"] == "售后报修：空调不制冷，外机不转"
    assert first["template_key"] == "after_sales_repair"
    assert first["source"] == "console"


def test_each_tenant_counts_its_own_numbers(
    org, admin, shipped, other_org, other_admin, other_shipped, client_as
):
    create(client_as(admin), org)

    theirs = create(client_as(other_admin), other_org)

    assert theirs["number"] == f"{today_prefix()}-0001"


def test_a_retry_with_the_same_idempotency_key_returns_the_ticket_and_makes_nothing(
    org, admin, shipped, client_as
):
    c = client_as(admin)
    body = {"template": "after_sales_repair", "answers": answers(org)}

    first = post(c, "/api/tickets", body, **{"Idempotency-Key": "order-77-ticket"})
    retry = post(c, "/api/tickets", body, **{"Idempotency-Key": "order-77-ticket"})

    assert first.status_code == retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"]
    assert Ticket.objects.count() == 1
    assert create(c, org)["number"] == f"{today_prefix()}-0002"


def test_the_same_idempotency_key_on_another_request_is_refused(org, admin, shipped, client_as):
    c = client_as(admin)
    post(
        c,
        "/api/tickets",
        {"template": "after_sales_repair", "answers": answers(org)},
        **{"Idempotency-Key": "k-1"},
    )

    r = post(
        c,
        "/api/tickets",
        {"template": "after_sales_repair", "answers": answers(org, fault="另一台空调漏水严重")},
        **{"Idempotency-Key": "k-1"},
    )

    assert (r.status_code, r.json()["code"]) == (400, "idempotency_key_reused")
    assert Ticket.objects.count() == 1


def test_the_same_shop_event_twice_gives_the_first_ticket(org, admin, shipped, client_as):
    c = client_as(admin)
    body = {
        "template": "after_sales_repair",
        "answers": answers(org),
        "source": "shop",
        "source_key": "order-20261124-88:return",
        "shop_order_ref": "SO-88",
    }

    first = post(c, "/api/tickets", body)
    again = post(c, "/api/tickets", {**body, "answers": answers(org, fault="第二次推送的描述")})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["answers"]["fault"] == "空调不制冷，外机不转"
    assert Ticket.objects.count() == 1
    assert TicketCounter.objects.get().last == 1


def test_a_taken_source_key_does_not_show_someone_elses_ticket(
    org, admin, shanghai_agent, shipped, client_as
):
    grant(shanghai_agent, ["ticket.view", "ticket.create"], "self")
    body = {
        "template": "after_sales_repair",
        "answers": answers(org, fault="董事长办公室空调漏水"),
        "source": "phone",
        "source_key": "call-1001",
    }
    first = post(client_as(admin), "/api/tickets", body)

    r = post(client_as(shanghai_agent), "/api/tickets", {**body, "answers": answers(org)})

    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        409,
        "duplicate_source_key",
        "source_key",
    )
    text = json.dumps(r.json(), ensure_ascii=False)
    assert "董事长" not in text and first.json()["number"] not in text
    assert Ticket.objects.count() == 1


def test_the_same_source_key_from_another_source_is_another_ticket(org, admin, shipped, client_as):
    c = client_as(admin)
    body = {"template": "after_sales_repair", "answers": answers(org), "source_key": "K-1"}

    shop = post(c, "/api/tickets", {**body, "source": "shop"})
    phone = post(c, "/api/tickets", {**body, "source": "phone"})

    assert shop.status_code == phone.status_code == 201
    assert shop.json()["id"] != phone.json()["id"]


def test_a_missing_fault_for_after_sales_service_names_the_field_in_chinese(
    org, admin, shipped, client_as
):
    r = post(
        client_as(admin),
        "/api/tickets",
        {"template": "after_sales_repair", "answers": answers(org, fault=None)},
    )

    assert r.status_code == 422
    assert r.json()["code"] == "form_invalid"
    assert r.json()["errors"] == [
        {"field": "answers.fault", "code": "required", "message": "请填写故障现象"}
    ]
    assert Ticket.objects.count() == 0


def test_every_wrong_field_is_listed_and_nothing_is_used_up(org, admin, shipped, client_as):
    c = client_as(admin)

    r = post(
        c,
        "/api/tickets",
        {
            "template": "after_sales_repair",
            "answers": answers(org, contact_name=None, fault="坏了", warranty="保修中"),
        },
    )

    assert r.status_code == 422
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert set(errors) == {"answers.contact_name", "answers.fault", "answers.warranty"}
    assert errors["answers.contact_name"] == "请填写联系人"
    assert "故障现象" in errors["answers.fault"]
    assert "是否在保" in errors["answers.warranty"]
    assert (Ticket.objects.count(), Customer.objects.count(), Instance.objects.count()) == (0, 0, 0)
    assert create(c, org)["number"] == f"{today_prefix()}-0001"


def test_a_consultation_does_not_ask_for_the_fault(org, admin, shipped, client_as):
    ticket = create(
        client_as(admin),
        org,
        answers={
            "contact_name": "韩梅梅",
            "contact_phone": "13900001111",
            "service_type": "产品咨询",
            "question": "这款空调有没有一级能效的型号？",
        },
    )

    assert ticket["answers"]["question"] == "这款空调有没有一级能效的型号？"
    assert "fault" not in ticket["answers"]


def test_an_unknown_template_is_refused(org, admin, shipped, client_as):
    r = post(client_as(admin), "/api/tickets", {"template": "no_such", "answers": {}})

    assert r.status_code in (404, 422)
    assert r.json()["field"] == "template"


def test_without_ticket_create_nothing_is_made(org, shanghai_agent, shipped, client_as):
    r = post(
        client_as(shanghai_agent),
        "/api/tickets",
        {"template": "after_sales_repair", "answers": answers(org)},
    )

    assert r.status_code == 403
    assert Ticket.objects.count() == 0


def test_anonymous_callers_are_asked_to_log_in(org, shipped):
    assert Client().get("/api/tickets").status_code == 401
    assert post(Client(), "/api/tickets", {"template": "after_sales_repair"}).status_code == 401


# --- the customer ---------------------------------------------------------------------------


def test_the_contact_phone_joins_the_existing_customer(org, admin, shipped, client_as):
    known = make_customer(admin, "李雷", PHONE)

    ticket = create(client_as(admin), org)

    assert ticket["customer_id"] == known.pk
    assert Customer.objects.count() == 1


def test_the_contact_email_joins_the_existing_customer(org, admin, shipped, client_as):
    known = make_customer(admin, "李雷", emails=("lilei@example.com",))

    ticket = create(
        client_as(admin),
        org,
        answers=answers(org, contact_phone="13900002222"),
        contact_email="LiLei@Example.com",
    )

    assert ticket["customer_id"] == known.pk


def test_an_unknown_contact_becomes_a_new_customer(org, admin, shipped, client_as):
    make_customer(admin, "别人", "13700000000")

    ticket = create(client_as(admin), org)

    made = Customer.objects.get(pk=ticket["customer_id"])
    assert made.name == "李雷"
    assert Customer.objects.count() == 2


def test_the_ticket_appears_on_the_customers_timeline(org, admin, shipped, client_as):
    known = make_customer(admin, "李雷", PHONE)

    ticket = create(client_as(admin), org)

    r = client_as(admin).get(f"/api/customers/{known.pk}/timeline")
    assert r.status_code == 200
    items = [i for i in r.json()["items"] if i["kind"] == "ticket"]
    assert len(items) == 1
    assert ticket["number"] in items[0]["title"]
    assert items[0]["data"]["ticket_id"] == ticket["id"]


# --- the stage follows the flow ---------------------------------------------------------------


def test_a_new_ticket_stands_at_受理_and_moves_with_its_flow(org, admin, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)
    assert ticket["stage"] == "受理"
    assert Instance.objects.get(pk=ticket["instance_id"]).business_key == ticket["number"]

    complete_step(admin, ticket["id"], "受理")

    now = c.get(f"/api/tickets/{ticket['id']}").json()
    assert now["stage"] == "派单"
    assert now["status"] == "open"


def test_closing_stops_the_flow_and_its_tasks(org, admin, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)
    complete_step(admin, ticket["id"], "受理")

    r = post(c, f"/api/tickets/{ticket['id']}/close", {"reason": "客户撤回报修"})

    assert r.status_code == 200
    assert r.json()["status"] == "closed"
    assert r.json()["stage"] == "已关闭"
    assert r.json()["closed_at"] is not None
    instance = Instance.objects.get(pk=ticket["instance_id"])
    assert instance.status == InstanceStatus.CANCELLED
    statuses = set(Task.objects.filter(instance=instance).values_list("name", "status"))
    assert statuses == {("受理", TaskStatus.COMPLETED), ("派单", TaskStatus.CANCELLED)}


def test_a_closed_ticket_cannot_be_closed_or_assigned_again(org, admin, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)
    post(c, f"/api/tickets/{ticket['id']}/close", {"reason": "重复工单"})

    again = post(c, f"/api/tickets/{ticket['id']}/close", {"reason": "重复工单"})
    assign = post(c, f"/api/tickets/{ticket['id']}/assign", {"owner_id": admin.pk})

    assert (again.status_code, again.json()["code"]) == (409, "ticket_closed")
    assert (assign.status_code, assign.json()["code"]) == (409, "ticket_closed")


def test_closing_needs_a_reason(org, admin, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)

    r = post(c, f"/api/tickets/{ticket['id']}/close", {"reason": "   "})

    assert r.status_code == 422
    assert r.json()["field"] == "reason"
    assert c.get(f"/api/tickets/{ticket['id']}").json()["status"] == "open"


def test_the_timeline_holds_ticket_and_flow_events_and_comments_in_time_order(
    org, admin, shipped, client_as
):
    c = client_as(admin)
    ticket = create(c, org)
    post(c, f"/api/tickets/{ticket['id']}/comments", {"body": "已电话联系客户"})
    complete_step(admin, ticket["id"], "受理")
    post(
        c,
        f"/api/tickets/{ticket['id']}/comments",
        {"body": "工程师明天上午上门", "visibility": "public"},
    )
    post(c, f"/api/tickets/{ticket['id']}/close", {"reason": "客户撤回"})

    r = c.get(f"/api/tickets/{ticket['id']}/timeline")

    assert r.status_code == 200
    items = r.json()
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)
    kinds = [i["kind"] for i in items]
    for kind in (
        "ticket.created",
        "ticket.routed",
        "flow.instance.started",
        "flow.task.created",
        "flow.task.completed",
        "comment.internal",
        "comment.public",
        "ticket.closed",
    ):
        assert kind in kinds, kind

    def at(kind: str, **data: Any) -> int:
        return next(
            n
            for n, i in enumerate(items)
            if i["kind"] == kind and all(i["data"].get(k) == v for k, v in data.items())
        )

    assert at("comment.internal") < at("flow.task.completed") < at("comment.public")
    assert at("comment.public") < at("ticket.closed")
    assert items[at("comment.internal")]["actor"] == "周志远"
    assert items[at("flow.task.completed")]["data"]["task"] == "受理"


# --- comments, watchers, assignment --------------------------------------------------------------


def test_comments_are_internal_unless_made_public(org, admin, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)

    internal = post(c, f"/api/tickets/{ticket['id']}/comments", {"body": "客户情绪较激动"})
    public = post(
        c, f"/api/tickets/{ticket['id']}/comments", {"body": "已安排上门", "visibility": "public"}
    )

    assert internal.status_code == public.status_code == 201
    listed = c.get(f"/api/tickets/{ticket['id']}/comments").json()
    assert [(x["body"], x["visibility"], x["author_name"]) for x in listed] == [
        ("客户情绪较激动", "internal", "周志远"),
        ("已安排上门", "public", "周志远"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"body": ""}, "body"), ({"body": "好", "visibility": "everyone"}, "visibility")],
)
def test_a_bad_comment_is_refused_naming_the_field(org, admin, shipped, client_as, body, field):
    c = client_as(admin)
    ticket = create(c, org)

    r = post(c, f"/api/tickets/{ticket['id']}/comments", body)

    assert r.status_code == 422
    assert r.json()["field"] == field


def test_watchers_and_the_owner_are_told_of_new_comments_but_not_the_author(
    org, admin, east_manager, shanghai_agent, shipped, client_as
):
    c = client_as(admin)
    ticket = create(c, org)
    post(c, f"/api/tickets/{ticket['id']}/assign", {"owner_id": shanghai_agent.pk})
    r = post(c, f"/api/tickets/{ticket['id']}/watchers", {"employee_id": east_manager.pk})
    assert r.status_code == 200
    assert r.json()["watcher_ids"] == [east_manager.pk]

    post(c, f"/api/tickets/{ticket['id']}/comments", {"body": "备件已到货"})

    told = Notification.objects.filter(kind="ticket.commented")
    assert sorted(told.values_list("recipient_id", flat=True)) == sorted(
        [east_manager.pk, shanghai_agent.pk]
    )
    assert all(ticket["number"] in n.title and n.body == "备件已到货" for n in told)


def test_someone_who_stops_watching_is_no_longer_told(org, admin, east_manager, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)
    post(c, f"/api/tickets/{ticket['id']}/watchers", {"employee_id": east_manager.pk})
    r = post(
        c,
        f"/api/tickets/{ticket['id']}/watchers",
        {"employee_id": east_manager.pk, "watching": False},
    )
    assert r.json()["watcher_ids"] == []

    post(c, f"/api/tickets/{ticket['id']}/comments", {"body": "备件已到货"})

    assert not Notification.objects.filter(recipient=east_manager, kind="ticket.commented")


def test_assigning_moves_the_open_steps_and_tells_the_new_owner(
    org, admin, shanghai_agent, shipped, client_as
):
    c = client_as(admin)
    ticket = create(c, org)

    r = post(
        c,
        f"/api/tickets/{ticket['id']}/assign",
        {"owner_id": shanghai_agent.pk, "reason": "上海片区"},
    )

    assert r.status_code == 200
    assert r.json()["owner_id"] == shanghai_agent.pk
    assert [(t.name, t.assignee_id) for t in open_tasks(ticket["id"])] == [
        ("受理", shanghai_agent.pk)
    ]
    told = Notification.objects.get(recipient=shanghai_agent, kind="ticket.assigned")
    assert ticket["number"] in told.title
    kinds = [i["kind"] for i in c.get(f"/api/tickets/{ticket['id']}/timeline").json()]
    assert "ticket.assigned" in kinds and "flow.task.transferred" in kinds


def test_the_new_owner_can_complete_the_step_given_to_them(
    org, admin, shanghai_agent, shipped, client_as
):
    grant(shanghai_agent, ["ticket.view", "ticket.handle"], "self")
    c = client_as(admin)
    ticket = create(c, org)
    post(c, f"/api/tickets/{ticket['id']}/assign", {"owner_id": shanghai_agent.pk})

    complete_step(shanghai_agent, ticket["id"], "受理")

    assert client_as(shanghai_agent).get(f"/api/tickets/{ticket['id']}").json()["stage"] == "派单"


def test_a_ticket_cannot_be_assigned_to_someone_who_left(
    org, admin, south_engineer, shipped, client_as
):
    south_engineer.status = "left"
    south_engineer.save()
    c = client_as(admin)
    ticket = create(c, org)

    r = post(c, f"/api/tickets/{ticket['id']}/assign", {"owner_id": south_engineer.pk})

    assert r.status_code == 422
    assert r.json()["field"] == "owner_id"
    assert c.get(f"/api/tickets/{ticket['id']}").json()["owner_id"] is None


def test_editing_the_priority_reaches_the_flow(org, admin, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)

    r = patch(c, f"/api/tickets/{ticket['id']}", {"priority": "S", "title": "外机不转（加急）"})

    assert r.status_code == 200
    assert (r.json()["priority"], r.json()["title"]) == ("S", "外机不转（加急）")
    assert Instance.objects.get(pk=ticket["instance_id"]).data["priority"] == "S"
    kinds = [i["kind"] for i in c.get(f"/api/tickets/{ticket['id']}/timeline").json()]
    assert "ticket.updated" in kinds


# --- attachments ----------------------------------------------------------------------------


def test_an_uploaded_photo_named_in_the_form_belongs_to_the_ticket(
    org, admin, shipped, client_as, media
):
    c = client_as(admin)
    content = png_bytes()
    up = upload(c, content)
    assert up.status_code == 201, up.json()
    key = up.json()["key"]
    assert up.json()["ticket_id"] is None
    assert up.json()["size"] == len(content)

    ticket = create(c, org, answers=answers(org, photos=[key]))

    assert [a["key"] for a in ticket["attachments"]] == [key]
    assert Attachment.objects.get(key=key).ticket_id == ticket["id"]
    down = c.get(f"/api/tickets/attachments/{key}")
    assert down.status_code == 200
    assert b"".join(down.streaming_content) == content
    assert content.startswith(b"\x89PNG")


def test_a_photo_already_on_another_ticket_is_refused(org, admin, shipped, client_as, media):
    c = client_as(admin)
    key = upload(c, png_bytes()).json()["key"]
    first = create(c, org, answers=answers(org, photos=[key]))

    r = post(
        c, "/api/tickets", {"template": "after_sales_repair", "answers": answers(org, photos=[key])}
    )

    assert r.status_code == 422
    assert "附件" in r.json()["message"]
    assert Ticket.objects.count() == 1
    assert Attachment.objects.get(key=key).ticket_id == first["id"]


def test_an_unknown_photo_key_is_a_form_error(org, admin, shipped, client_as):
    r = post(
        client_as(admin),
        "/api/tickets",
        {"template": "after_sales_repair", "answers": answers(org, photos=["f_nosuchfile"])},
    )

    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["answers.photos"]


def test_another_tenants_file_is_not_found(
    org, admin, shipped, other_org, other_admin, other_shipped, client_as, media
):
    key = upload(client_as(admin), png_bytes()).json()["key"]
    create(client_as(admin), org, answers=answers(org, photos=[key]))

    assert client_as(other_admin).get(f"/api/tickets/attachments/{key}").status_code == 404
    r = post(
        client_as(other_admin),
        "/api/tickets",
        {"template": "after_sales_repair", "answers": answers(other_org, photos=[key])},
    )
    assert r.status_code == 422
    assert Attachment.objects.get(key=key).tenant_id == admin.tenant_id
    assert not Ticket.objects.filter(tenant_id=other_admin.tenant_id).exists()


def test_a_colleagues_loose_upload_is_not_readable(
    org, admin, east_manager, shipped, client_as, media
):
    grant(east_manager, ["ticket.view", "ticket.create"], "region")
    key = upload(client_as(admin), png_bytes()).json()["key"]

    assert client_as(east_manager).get(f"/api/tickets/attachments/{key}").status_code == 404


def test_a_file_over_the_size_limit_is_refused_with_the_limit(
    org, admin, shipped, client_as, media, settings
):
    settings.TICKET_ATTACHMENT_MAX_BYTES = 1024 * 1024

    r = upload(client_as(admin), b"\x89PNG" + b"0" * (1024 * 1024))

    assert r.status_code == 422
    assert (r.json()["code"], r.json()["field"]) == ("too_large", "file")
    assert "1 MB" in r.json()["message"]
    assert Attachment.objects.count() == 0


def test_a_small_size_limit_is_stated_in_kilobytes(org, admin, shipped, client_as, media, settings):
    settings.TICKET_ATTACHMENT_MAX_BYTES = 512 * 1024

    r = upload(client_as(admin), b"0" * (512 * 1024 + 1))

    assert r.status_code == 422
    assert "512 KB" in r.json()["message"]


@pytest.mark.parametrize(
    ("name", "kind", "content", "code"),
    [
        ("setup.exe", "application/x-msdownload", b"MZ\x90\x00", "file_type"),
        ("page.html", "text/html", b"<script>alert(1)</script>", "file_type"),
        ("empty.png", "image/png", b"", "empty_file"),
    ],
)
def test_files_of_the_wrong_kind_or_empty_are_refused(
    org, admin, shipped, client_as, media, name, kind, content, code
):
    r = upload(client_as(admin), content, name=name, kind=kind)

    assert r.status_code == 422
    assert (r.json()["code"], r.json()["field"]) == (code, "file")
    assert Attachment.objects.count() == 0


def test_uploading_needs_a_ticket_permission(org, shanghai_agent, shipped, client_as, media):
    assert upload(client_as(shanghai_agent), png_bytes()).status_code == 403


# --- who sees which ticket --------------------------------------------------------------------


@pytest.fixture
def spread(org, admin, shanghai_agent, shipped, client_as) -> dict[str, dict[str, Any]]:
    """Three tickets: 上海 owned by the 上海 agent, 浦东 unowned, 广州 unowned."""
    c = client_as(admin)
    mine = create(c, org, region_id=org.shanghai.pk, title="上海：王芳的")
    post(c, f"/api/tickets/{mine['id']}/assign", {"owner_id": shanghai_agent.pk})
    pudong = create(
        c,
        org,
        region_id=org.pudong.pk,
        title="浦东：无人负责",
        answers=answers(org, contact_phone="13900000001"),
    )
    south = create(
        c,
        org,
        region_id=org.guangzhou.pk,
        title="广州：华南的",
        answers=answers(org, contact_phone="13900000002"),
    )
    return {"mine": mine, "pudong": pudong, "south": south}


def listed(client: Client, **query: Any) -> list[str]:
    r = client.get("/api/tickets", query)
    assert r.status_code == 200, r.json()
    return sorted(t["title"] for t in r.json()["items"])


def test_an_agent_with_self_scope_sees_only_their_own_tickets(
    org, shanghai_agent, spread, client_as
):
    grant(shanghai_agent, ["ticket.view"], "self")
    c = client_as(shanghai_agent)

    assert listed(c) == ["上海：王芳的"]
    assert c.get(f"/api/tickets/{spread['mine']['id']}").status_code == 200
    assert c.get(f"/api/tickets/{spread['pudong']['id']}").status_code == 404
    assert c.get(f"/api/tickets/{spread['south']['id']}/timeline").status_code == 404


def test_a_regional_manager_sees_the_regions_tickets_only(org, east_manager, spread, client_as):
    grant(east_manager, ["ticket.view"], "region")
    c = client_as(east_manager)

    assert listed(c) == ["上海：王芳的", "浦东：无人负责"]
    assert listed(c, region_id=org.pudong.pk) == ["浦东：无人负责"]
    assert c.get(f"/api/tickets/{spread['south']['id']}").status_code == 404


def test_the_list_filters_as_asked(org, admin, shanghai_agent, spread, client_as):
    c = client_as(admin)

    assert listed(c, mine="true") == []
    assert listed(c, owner_id=shanghai_agent.pk) == ["上海：王芳的"]
    assert listed(c, region_id=org.east.pk) == ["上海：王芳的", "浦东：无人负责"]
    assert listed(c, q="广州") == ["广州：华南的"]
    assert listed(c, q=spread["pudong"]["number"]) == ["浦东：无人负责"]
    assert listed(c, status="closed") == []
    assert len(listed(c, template="after_sales_repair")) == 3


def test_phone_numbers_are_masked_without_pii_permission(org, east_manager, spread, client_as):
    grant(east_manager, ["ticket.view"], "region")
    masked_viewer: Employee = EmployeeFactory.create(tenant=org.tenant, region=org.east)
    grant(masked_viewer, ["ticket.view"], "region")

    seen = client_as(masked_viewer).get(f"/api/tickets/{spread['mine']['id']}").json()
    full = client_as(east_manager).get(f"/api/tickets/{spread['mine']['id']}").json()

    assert seen["contact_phone"] == "138****5678"
    assert full["contact_phone"] == PHONE


def _foreign_calls(ticket_id: int, someone: int) -> list[tuple[str, str, Any]]:
    base = f"/api/tickets/{ticket_id}"
    return [
        ("get", base, None),
        ("get", f"{base}/timeline", None),
        ("get", f"{base}/comments", None),
        ("get", f"{base}/progress-qr.png", None),
        ("patch", base, {"title": "改掉"}),
        ("post", f"{base}/assign", {"owner_id": someone}),
        ("post", f"{base}/close", {"reason": "关掉"}),
        ("post", f"{base}/comments", {"body": "看看"}),
        ("post", f"{base}/watchers", {"employee_id": someone}),
        ("post", f"{base}/opportunity", {"title": "偷来的商机"}),
        ("post", "/api/tickets/bulk/assign", {"ticket_ids": [ticket_id], "owner_id": someone}),
        ("post", "/api/tickets/bulk/close", {"ticket_ids": [ticket_id], "reason": "关掉"}),
    ]


def test_another_tenants_ticket_is_not_found_on_every_endpoint(
    org, admin, shipped, other_org, other_admin, other_shipped, client_as
):
    theirs = create(client_as(other_admin), other_org)
    ours = client_as(admin)

    for method, url, body in _foreign_calls(theirs["id"], admin.pk):
        if method == "get":
            r = ours.get(url)
        else:
            r = getattr(ours, method)(url, body, content_type="application/json")
        assert r.status_code == 404, (method, url, r.status_code)
        assert "外人" not in json.dumps(r.json(), ensure_ascii=False)
    unchanged = Ticket.objects.get(pk=theirs["id"])
    assert (unchanged.title, unchanged.status, unchanged.owner_id) == (
        theirs["title"],
        "open",
        None,
    )
    assert not unchanged.comments.exists()


def test_another_tenants_ticket_number_finds_nothing(
    org, admin, shipped, other_org, other_admin, other_shipped, client_as
):
    create(client_as(admin), org)
    c = client_as(other_admin)
    create(c, other_org)
    second = create(c, other_org, title="别家的空调漏水")

    assert listed(client_as(admin), q=second["number"]) == []
    assert listed(client_as(admin), q="别家") == []
    assert client_as(admin).get("/api/tickets").json()["count"] == 1
