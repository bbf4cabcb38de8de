"""The customer's progress page: no login, behind the ticket's token; the steps done, the current
one and the next as the flow moves, the public comments — and nothing internal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from jingwei.flows import engine
from jingwei.tickets import services
from jingwei.tickets.models import Source, Ticket

from .test_tickets import PHONE, complete_step, create, post


def token_of(ticket: dict[str, Any]) -> str:
    url: str = ticket["progress_url"]
    assert "/p/" in url
    return url.rsplit("/p/", 1)[1]


def progress(token: str) -> Any:
    return Client().get(f"/api/public/progress/{token}")


def states(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["name"], s["state"]) for s in page["steps"]]


@pytest.fixture
def parts_actions() -> Any:
    """Stand-ins for the service-task actions the parts and settlement modules will register
    (after 派单 the after-sales flow reserves parts)."""
    names = ["reserve_parts", "consume_parts", "post_settlement_line"]
    registered = {name: engine._actions.get(name) for name in names}
    for name in names:
        if registered[name] is None:
            engine.action(name)(lambda instance, node, params: {})
    yield
    for name in names:
        if registered[name] is None:
            engine._actions.pop(name, None)


@pytest.fixture
def ticket(org, admin, shanghai_agent, shipped, client_as) -> dict[str, Any]:
    c = client_as(admin)
    made = create(c, org, region_id=org.shanghai.pk, contact_email="lilei@example.com")
    post(c, f"/api/tickets/{made['id']}/assign", {"owner_id": shanghai_agent.pk})
    return made


def test_a_new_ticket_shows_受理_as_current_and_派单_next(ticket):
    r = progress(token_of(ticket))

    assert r.status_code == 200
    page = r.json()
    assert page["number"] == ticket["number"]
    assert (page["status"], page["status_label"]) == ("open", "处理中")
    assert states(page) == [
        ("受理", "current"),
        ("派单", "next"),
        ("处理", "todo"),
        ("验收", "todo"),
        ("回访", "todo"),
        ("结算", "todo"),
    ]
    assert [e["title"] for e in page["events"]] == ["已受理"]


def test_the_steps_follow_the_flow(admin, ticket, parts_actions):
    complete_step(admin, ticket["id"], "受理")

    page = progress(token_of(ticket)).json()

    assert states(page)[:3] == [("受理", "done"), ("派单", "current"), ("处理", "next")]
    done = page["steps"][0]
    assert done["completed_at"] is not None
    assert all(s["completed_at"] is None for s in page["steps"][1:])

    complete_step(admin, ticket["id"], "派单")

    page = progress(token_of(ticket)).json()
    assert states(page)[:4] == [
        ("受理", "done"),
        ("派单", "done"),
        ("处理", "current"),
        ("验收", "next"),
    ]


def test_a_closed_ticket_shows_closed_and_no_next_step(admin, ticket, client_as):
    complete_step(admin, ticket["id"], "受理")
    post(client_as(admin), f"/api/tickets/{ticket['id']}/close", {"reason": "客户自行修好"})

    page = progress(token_of(ticket)).json()

    assert (page["status"], page["status_label"]) == ("closed", "已关闭")
    assert page["closed_at"] is not None
    assert ("受理", "done") in states(page)
    assert not [s for s in page["steps"] if s["state"] in ("current", "next")]
    assert [e["title"] for e in page["events"]] == ["已受理", "已关闭"]


def test_only_public_comments_show_and_without_staff_names(admin, ticket, client_as):
    c = client_as(admin)
    post(c, f"/api/tickets/{ticket['id']}/comments", {"body": "客户脾气差，注意沟通"})
    post(
        c,
        f"/api/tickets/{ticket['id']}/comments",
        {"body": "工程师明天上午上门", "visibility": "public"},
    )
    services.comment_add(
        actor=None,
        ticket=Ticket.objects.get(pk=ticket["id"]),
        body="好的，我在家等",
        visibility="public",
        via=Source.EMAIL,
        author_name="李雷",
    )

    page = progress(token_of(ticket)).json()

    assert [(x["author"], x["body"]) for x in page["comments"]] == [
        ("客服", "工程师明天上午上门"),
        ("您", "好的，我在家等"),
    ]


def test_nothing_internal_appears_on_the_page(org, admin, shanghai_agent, ticket, client_as):
    c = client_as(admin)
    post(c, f"/api/tickets/{ticket['id']}/comments", {"body": "内部备注：客户欠款未结"})
    post(c, f"/api/tickets/{ticket['id']}/comments", {"body": "已派工程师", "visibility": "public"})
    post(c, f"/api/tickets/{ticket['id']}/watchers", {"employee_id": shanghai_agent.pk})
    complete_step(admin, ticket["id"], "受理")

    r = progress(token_of(ticket))

    # Compare on readable text: the JSON may escape Chinese as \uXXXX.
    text = json.dumps(r.json(), ensure_ascii=False)
    assert "已派工程师" in text  # the check below can see Chinese text
    for secret in (
        "内部备注",
        "客户欠款未结",
        admin.name,
        shanghai_agent.name,
        "李雷",
        PHONE,
        "138****5678",
        "5678",
        "lilei@example.com",
        "空调不制冷",
        "世纪大道",
        "过保",
        "售后服务",
        ticket["progress_url"].rsplit("/p/", 1)[1],
    ):
        assert secret not in text, secret
    for internal_key in (
        "owner",
        "assignee",
        "answers",
        "customer",
        "sla",
        "due",
        "phone",
        "email",
        "internal",
    ):
        assert f'"{internal_key}' not in text, internal_key


@pytest.mark.parametrize("token", ["no-such-token", "x" * 65, "%20"])
def test_an_unknown_token_is_not_found(ticket, token):
    r = progress(token)

    assert r.status_code == 404
    assert ticket["number"] not in r.content.decode()


def test_the_progress_page_needs_no_login_but_the_qr_codes_do(ticket):
    assert progress(token_of(ticket)).status_code == 200
    assert Client().get(f"/api/tickets/{ticket['id']}/progress-qr.png").status_code == 401


def test_the_qr_codes_are_a_png_and_an_svg(admin, ticket, client_as):
    c = client_as(admin)

    png = c.get(f"/api/tickets/{ticket['id']}/progress-qr.png")
    svg = c.get(f"/api/tickets/{ticket['id']}/progress-qr.svg")

    assert png.status_code == 200
    assert png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert svg.status_code == 200
    assert svg["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content
    assert c.get(f"/api/tickets/{ticket['id']}/progress-qr.gif").status_code in (404, 422)


def test_the_qr_code_is_for_this_tickets_page(ticket):
    url = ticket["progress_url"]

    assert url.endswith(f"/p/{token_of(ticket)}")
    assert services.qr_png(url) == services.qr_png(url)
    assert services.qr_png(url) != services.qr_png(url + "x")


def test_each_ticket_has_its_own_unguessable_token(org, admin, ticket, client_as):
    other = create(client_as(admin), org)

    assert token_of(other) != token_of(ticket)
    assert len(token_of(ticket)) >= 24
    assert progress(token_of(other)).json()["number"] == other["number"]
