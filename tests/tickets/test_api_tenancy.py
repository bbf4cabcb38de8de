"""Tenancy and the customer's view of tickets where the endpoint table (tests/api_specs.py) cannot
say it: text references (ticket numbers, template keys, file keys), uploads, the public form and
the progress page. Another tenant's object answers exactly like one that does not exist."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from jingwei.org.models import Employee
from jingwei.org.scope import actor_for
from jingwei.tickets import services
from jingwei.tickets.models import Attachment, Ticket, TicketComment

from ..api_specs import (
    PNG,
    Side,
    inquiry_answers,
    new_attachment,
    new_employee,
    new_public_template,
    new_template,
    new_ticket,
    public_submission,
)
from ..factories import grant

pytestmark = pytest.mark.django_db

MISSING_ID = 987_654_321


@pytest.fixture
def ours(org: Any, admin: Employee) -> Side:
    return Side(org, admin, "甲方", "jiafang")


@pytest.fixture
def theirs(other_org: Any, other_admin: Employee) -> Side:
    return Side(other_org, other_admin, "乙方", "yifang")


@pytest.fixture
def api(ours: Side, client_as: Any) -> Client:
    client: Client = client_as(ours.admin)
    return client


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def listed_ids(r: Any) -> set[int]:
    assert r.status_code == 200, r.content
    return {item["id"] for item in r.json()["items"]}


def csv_numbers(r: Any) -> list[str]:
    assert r.status_code == 200, r.content
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    return [row[0] for row in rows[1:]]


def leaks(text: str, side: Side) -> list[str]:
    return [m for m in (side.label, side.slug, side.tenant.name, side.admin.name) if m in text]


# --- ticket numbers and template keys (text, not ids) ----------------------------------------


def test_another_tenants_ticket_number_in_the_search_finds_nothing(
    ours: Side, theirs: Side, api: Client
) -> None:
    mine = new_ticket(ours)
    theirs_tickets = [new_ticket(theirs) for _ in range(3)]
    # Numbers count per tenant: their first may equal ours, their third exists only there.
    only_theirs = theirs_tickets[-1].number

    found = api.get("/api/tickets", {"q": only_theirs})
    nobody = api.get("/api/tickets", {"q": "GD19700101-9999"})

    assert listed_ids(found) == listed_ids(nobody) == set()
    assert not leaks(found.content.decode(), theirs)
    same_number = api.get("/api/tickets", {"q": theirs_tickets[0].number})
    assert listed_ids(same_number) <= {mine.pk}


def test_another_tenants_template_key_is_refused_like_an_unknown_one(
    ours: Side, theirs: Side, api: Client
) -> None:
    their_key = new_template(theirs).key
    before = Ticket.objects.count()

    for path, body in (
        ("/api/tickets", {"answers": inquiry_answers(ours)}),
        ("/api/tickets/routing-rules/dry-run", {"answers": inquiry_answers(ours)}),
    ):
        pointed = post(api, path, {**body, "template": their_key})
        missing = post(api, path, {**body, "template": "no-such-template"})

        assert pointed.status_code == missing.status_code == 404, pointed.content
        expected = missing.json()
        assert pointed.json() == {
            **expected,
            "message": expected["message"].replace("no-such-template", their_key),
        }
    assert Ticket.objects.count() == before


# --- files -----------------------------------------------------------------------------------


def test_upload_to_another_tenants_ticket_answers_like_a_missing_ticket(
    ours: Side, theirs: Side, api: Client
) -> None:
    their_ticket = new_ticket(theirs)

    def upload(ticket_id: int) -> Any:
        photo = io.BytesIO(PNG)
        photo.name = "现场照片.png"
        return api.generic(
            "POST",
            f"/api/tickets/attachments?ticket_id={ticket_id}",
            encode_multipart(BOUNDARY, {"file": photo}),
            content_type=MULTIPART_CONTENT,
        )

    pointed, missing = upload(their_ticket.pk), upload(MISSING_ID)

    assert pointed.status_code == 404, pointed.content
    assert (missing.status_code, missing.json()) == (404, pointed.json())
    assert not Attachment.objects.exists()


def test_file_downloads_only_within_the_tenant_and_by_who_may_see_it(
    ours: Side, theirs: Side, api: Client
) -> None:
    mine, their_file = new_attachment(ours), new_attachment(theirs)
    colleague = Side(ours.org, new_employee(ours), ours.label, ours.slug)
    grant(colleague.admin, ["ticket.create", "ticket.view"], "self")
    colleagues_draft = new_attachment(colleague)  # uploaded, not yet on a ticket

    own = api.get(f"/api/tickets/attachments/{mine.key}")
    pointed = api.get(f"/api/tickets/attachments/{their_file.key}")
    draft = api.get(f"/api/tickets/attachments/{colleagues_draft.key}")
    missing = api.get("/api/tickets/attachments/f_000000000000000000000000")

    assert own.status_code == 200
    assert b"".join(own.streaming_content) == PNG
    assert pointed.status_code == draft.status_code == missing.status_code == 404
    assert pointed.json() == draft.json() == missing.json()


def test_another_tenants_file_key_on_a_new_ticket_is_refused_like_an_unknown_one(
    ours: Side, theirs: Side, api: Client
) -> None:
    their_key = new_attachment(theirs).key
    body = {"template": new_template(ours).key, "answers": inquiry_answers(ours)}
    before = Ticket.objects.count()

    pointed = post(api, "/api/tickets", {**body, "attachment_keys": [their_key]})
    missing = post(api, "/api/tickets", {**body, "attachment_keys": ["f_000000000000000000000000"]})

    assert pointed.status_code == 422, pointed.content
    assert (missing.status_code, missing.json()) == (422, pointed.json())
    assert pointed.json()["field"] == "attachment_keys"
    assert Ticket.objects.count() == before
    assert Attachment.objects.get(key=their_key).ticket_id is None


# --- export of selected tickets --------------------------------------------------------------


def test_export_of_selected_tickets_leaves_out_another_tenants_like_missing_ones(
    ours: Side, theirs: Side, api: Client
) -> None:
    mine = new_ticket(ours)
    their_ids = [new_ticket(theirs).pk for _ in range(2)]

    pointed = post(api, "/api/tickets/export", {"ticket_ids": [mine.pk, *their_ids]})
    missing = post(api, "/api/tickets/export", {"ticket_ids": [mine.pk, MISSING_ID]})

    assert csv_numbers(pointed) == csv_numbers(missing) == [mine.number]
    assert not leaks(pointed.content.decode("utf-8-sig"), theirs)


# --- the public form and the progress page ---------------------------------------------------


def test_public_form_files_the_ticket_in_the_forms_own_tenant(
    ours: Side, theirs: Side, client: Client
) -> None:
    form = new_public_template(theirs)

    r = post(client, f"/api/public/forms/{form.public_token}", public_submission(theirs))

    assert r.status_code == 201, r.content
    ticket = Ticket.objects.get(source="public_form")
    assert (ticket.tenant_id, ticket.template_id, ticket.number) == (
        theirs.tenant.pk,
        form.pk,
        r.json()["number"],
    )
    assert not Ticket.objects.filter(tenant=ours.tenant).exists()


def test_a_closed_public_form_answers_like_an_unknown_link(ours: Side, client: Client) -> None:
    form = new_public_template(ours)
    token = form.public_token
    services.template_publish_form(actor=actor_for(ours.admin), template_id=form.pk, enabled=False)

    closed = client.get(f"/api/public/forms/{token}")
    unknown = client.get("/api/public/forms/no-such-token")
    submitted = post(client, f"/api/public/forms/{token}", public_submission(ours))

    assert closed.status_code == unknown.status_code == submitted.status_code == 404
    assert closed.json() == unknown.json() == submitted.json()
    assert not Ticket.objects.exists()


def test_progress_page_shows_customer_visible_words_and_nothing_internal(
    ours: Side, client: Client, client_as: Any
) -> None:
    ticket = new_ticket(ours)
    engineer = new_employee(ours)
    actor = actor_for(ours.admin)
    services.ticket_assign(actor=actor, ticket_id=ticket.pk, owner_id=engineer.pk, reason="上门")
    services.comment_add(
        actor=actor,
        ticket_id=ticket.pk,
        body="内部备注：客户脾气急，先报备主管",
        visibility="internal",
    )
    services.comment_add(
        actor=actor, ticket_id=ticket.pk, body="工程师明天上午上门检修", visibility="public"
    )

    r = client.get(f"/api/public/progress/{ticket.progress_token}")

    assert r.status_code == 200, r.content
    page = r.json()
    text = json.dumps(page, ensure_ascii=False)
    assert [(c["author"], c["body"]) for c in page["comments"]] == [
        ("客服", "工程师明天上午上门检修")
    ]
    assert page["number"] == ticket.number
    for secret in (
        "内部备注",
        ours.admin.name,
        engineer.name,
        ticket.contact_phone,
        ticket.answers["question"],
        ticket.title,
        ours.tenant.name,
    ):
        assert secret not in text, f"{secret!r} shows on the progress page"
    # Staff see both comments on the ticket itself.
    staff = client_as(ours.admin).get(f"/api/tickets/{ticket.pk}/comments")
    assert [c["visibility"] for c in staff.json()] == ["internal", "public"]
    assert TicketComment.objects.filter(ticket=ticket).count() == 2


def test_progress_of_an_unknown_ticket_is_404(ours: Side, client: Client) -> None:
    new_ticket(ours)

    r = client.get("/api/public/progress/no-such-token")

    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
