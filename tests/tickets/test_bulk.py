"""Bulk work over selected tickets: assign and close are all-or-nothing and name the ticket that
stops the batch; the CSV export speaks Chinese, masks phone numbers for those without PII rights,
stays within the exporter's scope and counts against the export guard."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from jingwei.flows.models import Instance, InstanceStatus, Task, TaskStatus
from jingwei.notify.models import Notification
from jingwei.org.models import Employee
from jingwei.tickets.models import Ticket, TicketEvent
from jingwei.tickets.services.bulk import COLUMNS

from ..factories import EmployeeFactory, grant
from .test_tickets import PHONE, answers, create, open_tasks, post


@pytest.fixture
def three(org, admin, shipped, client_as) -> list[dict[str, Any]]:
    """Three open tickets: two in 上海, one in 广州, each from another customer."""
    c = client_as(admin)
    return [
        create(c, org, region_id=org.shanghai.pk),
        create(c, org, region_id=org.pudong.pk, answers=answers(org, contact_phone="13900000001")),
        create(
            c, org, region_id=org.guangzhou.pk, answers=answers(org, contact_phone="13900000002")
        ),
    ]


def ids(tickets: list[dict[str, Any]]) -> list[int]:
    return [t["id"] for t in tickets]


def rows_of(response: Any) -> list[list[str]]:
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")  # Excel opens the Chinese header correctly
    return list(csv.reader(io.StringIO(text[1:])))


def exporter(org: Any, codes: list[str], scope: str = "tenant", **extra: Any) -> Employee:
    e: Employee = EmployeeFactory.create(
        tenant=org.tenant, department=org.east_dept, region=org.east, **extra
    )
    grant(e, codes, scope)
    return e


# --- assign ---------------------------------------------------------------------------------


def test_three_tickets_are_assigned_at_once(org, admin, shanghai_agent, three, client_as):
    r = post(
        client_as(admin),
        "/api/tickets/bulk/assign",
        {"ticket_ids": ids(three), "owner_id": shanghai_agent.pk, "reason": "周末值班"},
    )

    assert r.status_code == 200
    assert r.json() == {"count": 3, "numbers": [t["number"] for t in three]}
    for ticket in three:
        assert Ticket.objects.get(pk=ticket["id"]).owner_id == shanghai_agent.pk
        assert [t.assignee_id for t in open_tasks(ticket["id"])] == [shanghai_agent.pk]
    told = Notification.objects.filter(recipient=shanghai_agent, kind="ticket.assigned")
    assert told.count() == 3
    assert TicketEvent.objects.filter(kind="assigned", data__reason="周末值班").count() == 3


def test_one_closed_ticket_refuses_the_whole_batch_naming_it(
    org, admin, shanghai_agent, three, client_as
):
    c = client_as(admin)
    post(c, f"/api/tickets/{three[1]['id']}/close", {"reason": "重复报修"})
    events_before = TicketEvent.objects.count()

    r = post(
        c, "/api/tickets/bulk/assign", {"ticket_ids": ids(three), "owner_id": shanghai_agent.pk}
    )

    assert r.status_code == 409
    assert r.json()["code"] == "ticket_closed"
    assert three[1]["number"] in r.json()["message"]
    assert r.json()["field"] == "ticket_ids.1"
    assert set(Ticket.objects.values_list("owner_id", flat=True)) == {None}
    assert not Task.objects.filter(assignee=shanghai_agent).exists()
    assert not Notification.objects.filter(recipient=shanghai_agent).exists()
    assert TicketEvent.objects.count() == events_before


def test_a_ticket_out_of_reach_refuses_the_batch(
    org, admin, east_manager, shanghai_agent, three, client_as
):
    grant(east_manager, ["ticket.view", "ticket.assign"], "region")

    r = post(
        client_as(east_manager),
        "/api/tickets/bulk/assign",
        {"ticket_ids": ids(three), "owner_id": shanghai_agent.pk},
    )

    assert r.status_code == 404
    assert r.json()["field"] == "ticket_ids.2"
    assert set(Ticket.objects.values_list("owner_id", flat=True)) == {None}


def test_a_regional_manager_assigns_within_their_region(
    org, east_manager, shanghai_agent, three, client_as
):
    grant(east_manager, ["ticket.view", "ticket.assign"], "region")

    r = post(
        client_as(east_manager),
        "/api/tickets/bulk/assign",
        {"ticket_ids": ids(three[:2]), "owner_id": shanghai_agent.pk},
    )

    assert r.status_code == 200
    assert r.json()["count"] == 2


def test_bulk_assignment_needs_the_assign_permission(org, shanghai_agent, three, client_as):
    grant(shanghai_agent, ["ticket.view", "ticket.handle"], "tenant")

    r = post(
        client_as(shanghai_agent),
        "/api/tickets/bulk/assign",
        {"ticket_ids": ids(three), "owner_id": shanghai_agent.pk},
    )

    assert r.status_code == 403
    assert set(Ticket.objects.values_list("owner_id", flat=True)) == {None}


def test_bulk_assignment_to_an_unknown_person_is_refused(org, admin, three, client_as):
    r = post(
        client_as(admin), "/api/tickets/bulk/assign", {"ticket_ids": ids(three), "owner_id": 999999}
    )

    assert r.status_code == 422
    assert r.json()["field"] == "owner_id"


# --- close ----------------------------------------------------------------------------------


def test_bulk_close_closes_each_ticket_and_stops_its_flow(org, admin, three, client_as):
    r = post(
        client_as(admin),
        "/api/tickets/bulk/close",
        {"ticket_ids": ids(three), "reason": "系统故障误报"},
    )

    assert r.status_code == 200
    assert r.json()["count"] == 3
    for ticket in Ticket.objects.all():
        assert (ticket.status, ticket.stage) == ("closed", "已关闭")
        assert ticket.closed_at is not None
    assert set(Instance.objects.values_list("status", flat=True)) == {InstanceStatus.CANCELLED}
    assert not Task.objects.filter(status=TaskStatus.OPEN).exists()
    closed = TicketEvent.objects.filter(kind="closed")
    assert [e.data["reason"] for e in closed] == ["系统故障误报"] * 3


def test_bulk_close_needs_a_reason(org, admin, three, client_as):
    r = post(client_as(admin), "/api/tickets/bulk/close", {"ticket_ids": ids(three), "reason": " "})

    assert r.status_code == 422
    assert r.json()["field"] == "reason"
    assert set(Ticket.objects.values_list("status", flat=True)) == {"open"}


def test_bulk_close_with_a_finished_ticket_changes_nothing(org, admin, three, client_as):
    c = client_as(admin)
    post(c, f"/api/tickets/{three[0]['id']}/close", {"reason": "重复"})

    r = post(c, "/api/tickets/bulk/close", {"ticket_ids": ids(three), "reason": "清理"})

    assert r.status_code == 409
    assert three[0]["number"] in r.json()["message"]
    assert sorted(Ticket.objects.values_list("status", flat=True)) == ["closed", "open", "open"]
    assert Instance.objects.filter(status=InstanceStatus.RUNNING).count() == 2


def test_an_empty_selection_is_refused(org, admin, shipped, client_as):
    r = post(client_as(admin), "/api/tickets/bulk/close", {"ticket_ids": [], "reason": "清理"})

    assert r.status_code == 422
    assert r.json()["field"] == "ticket_ids"


# --- export ---------------------------------------------------------------------------------


def test_the_export_has_a_chinese_header_and_masks_phones_without_pii(org, three, client_as):
    clerk = exporter(org, ["ticket.view", "ticket.export"])

    r = post(client_as(clerk), "/api/tickets/export")

    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/csv")
    assert "tickets.csv" in r["Content-Disposition"]
    rows = rows_of(r)
    assert rows[0] == COLUMNS
    assert rows[0][:3] == ["工单号", "标题", "模板"]
    assert len(rows) == 4
    phones = {row[0]: row[COLUMNS.index("联系电话")] for row in rows[1:]}
    assert phones[three[0]["number"]] == "138****5678"
    assert PHONE not in r.content.decode()
    by_number = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]}
    first = by_number[three[0]["number"]]
    assert (first["模板"], first["状态"], first["当前步骤"], first["区域"]) == (
        "售后报修",
        "处理中",
        "受理",
        "上海",
    )
    assert first["联系人"] == "李雷"


def test_with_pii_permission_the_export_shows_full_phones(org, three, client_as):
    clerk = exporter(org, ["ticket.view", "ticket.export", "customer.view_pii"])

    rows = rows_of(post(client_as(clerk), "/api/tickets/export"))

    assert PHONE in [row[COLUMNS.index("联系电话")] for row in rows[1:]]


def test_the_export_takes_the_selected_tickets_or_the_filter(org, admin, three, client_as):
    c = client_as(admin)
    post(c, f"/api/tickets/{three[2]['id']}/close", {"reason": "重复"})

    selected = rows_of(post(c, "/api/tickets/export", {"ticket_ids": ids(three[:2])}))
    closed = rows_of(post(c, "/api/tickets/export?status=closed"))

    assert [row[0] for row in selected[1:]] == [three[1]["number"], three[0]["number"]]
    assert [row[0] for row in closed[1:]] == [three[2]["number"]]
    assert closed[1][COLUMNS.index("状态")] == "已关闭"
    assert closed[1][COLUMNS.index("完成/关闭时间")] != ""


def test_the_export_stays_within_the_exporters_scope(org, three, client_as):
    clerk = exporter(org, ["ticket.view", "ticket.export"], "region")

    rows = rows_of(post(client_as(clerk), "/api/tickets/export"))

    assert sorted(row[0] for row in rows[1:]) == sorted(t["number"] for t in three[:2])


def test_exporting_needs_the_export_permission(org, three, client_as):
    reader = exporter(org, ["ticket.view"])

    r = post(client_as(reader), "/api/tickets/export")

    assert r.status_code == 403


def test_an_export_over_the_guard_freezes_the_account(org, three, client_as, settings):
    settings.EXPORT_GUARD_MAX_ROWS = 2
    clerk = exporter(org, ["ticket.view", "ticket.export"])
    c = client_as(clerk)

    r = post(c, "/api/tickets/export")

    assert r.status_code == 403
    assert r.json()["code"] == "export_frozen"
    assert r["Content-Type"].startswith("application/json")  # an error, no CSV
    clerk.refresh_from_db()
    assert clerk.frozen_at is not None
    assert c.get("/api/tickets").status_code in (401, 403)


def test_exports_add_up_within_the_guards_window(org, three, client_as, settings):
    settings.EXPORT_GUARD_MAX_ROWS = 3
    clerk = exporter(org, ["ticket.view", "ticket.export"])
    c = client_as(clerk)

    first = post(c, "/api/tickets/export", {"ticket_ids": ids(three[:2])})
    second = post(c, "/api/tickets/export", {"ticket_ids": ids(three[:2])})

    assert first.status_code == 200
    assert (second.status_code, second.json()["code"]) == (403, "export_frozen")
