"""Email to ticket, end to end: a mail to the service mailbox opens a ticket joined to the sender's
customer profile, the customer gets a reply with the progress link and its QR code, his answer to
that reply lands on the same ticket, and a mail delivered twice changes nothing. The last test
sends through a real SMTP server on loopback."""

from __future__ import annotations

import smtplib
import socket

import pytest
from django.core import mail as django_mail
from django_tasks_db.models import DBTaskResult

from jingwei.customers.identities import IdentityInput
from jingwei.customers.services import customer_resolve
from jingwei.notify.models import Notification
from jingwei.tickets.mail import parse_message
from jingwei.tickets.models import Attachment, Mailbox, Source, Ticket, TicketComment
from jingwei.tickets.services import intake
from jingwei.tickets.smtp import start_server, stop_server

from .mail_samples import (
    MAILBOX,
    SUBJECT,
    WANG_ADDRESS,
    b64,
    encoded_word,
    multipart_mail,
    part,
    raw_mail,
)


@pytest.fixture
def mailbox(shipped, org):
    return Mailbox.objects.create(
        tenant=org.tenant, address=MAILBOX, template=shipped["after_sales_repair"]
    )


@pytest.fixture
def wang(org):
    return customer_resolve(
        actor=None,
        tenant_id=org.tenant.pk,
        identities=[IdentityInput(kind="email", value="Wang.Jianguo@example.com")],
        profile={"name": "王建国", "region_id": org.pudong.pk},
    ).customer


def run_acknowledgements() -> list[str]:
    """Run the queued acknowledgement jobs as the worker would (their service, same arguments)."""
    sent = []
    for row in DBTaskResult.objects.filter(task_path="jingwei.tickets.tasks.send_acknowledgement"):
        sent.append(intake.acknowledgement_send(**row.args_kwargs["kwargs"]))
    return sent


def test_a_gb2312_mail_opens_a_ticket_on_the_senders_profile(mailbox, wang, org):
    ticket = intake.mail_receive(MAILBOX, raw_mail())

    assert ticket.number.startswith("GD")
    assert ticket.source == Source.EMAIL
    assert ticket.title == SUBJECT
    assert ticket.customer_id == wang.pk
    assert ticket.region_id == org.pudong.pk  # the customer's region: routed and scoped by it
    assert ticket.contact_email == WANG_ADDRESS
    assert ticket.answers == {}  # a mail cannot fill the form: 受理 completes it
    assert ticket.stage == "受理"
    first = TicketComment.objects.get(ticket=ticket)
    assert first.visibility == "public" and first.via == "email"
    assert "吹热风" in first.body  # the GBK body decoded
    assert first.author_name == "王建国"


def test_the_customer_gets_a_reply_with_the_progress_link_and_qr_code(mailbox, wang):
    ticket = intake.mail_receive(MAILBOX, raw_mail())
    assert not django_mail.outbox  # not inside the SMTP session: a queued job
    [reply_id] = run_acknowledgements()

    [sent] = django_mail.outbox
    reply = parse_message(sent.message().as_bytes())
    assert reply.subject == f"Re: [{ticket.number}] {SUBJECT}"
    assert reply.to == (WANG_ADDRESS,)
    assert reply.in_reply_to == ("20261124100000.4711@mail.example.com",)
    assert f"/p/{ticket.progress_token}" in reply.full_text
    assert any(a.content.startswith(b"\x89PNG") for a in reply.attachments)  # the inline QR
    assert TicketComment.objects.filter(ticket=ticket, message_id=reply_id).exists()


def test_his_answer_to_our_reply_lands_on_the_same_ticket(mailbox, wang):
    ticket = intake.mail_receive(MAILBOX, raw_mail())
    [reply_id] = run_acknowledgements()
    answer = raw_mail(
        subject=encoded_word(f"回复：Re: [{ticket.number}] {SUBJECT}", "gbk"),
        message_id="<answer.1@mail.example.com>",
        extra_headers=f"In-Reply-To: <{reply_id}>\r\nReferences: <{reply_id}>\r\n",
        body="型号是 KFR-35GW，上午在家。\r\n".encode("gbk"),
    )
    again = intake.mail_receive(MAILBOX, answer)

    assert again.pk == ticket.pk and Ticket.objects.count() == 1
    latest = TicketComment.objects.filter(ticket=ticket).order_by("-id").first()
    assert latest is not None and "上午在家" in latest.body
    assert latest.message_id == "answer.1@mail.example.com"


def test_a_ticket_number_in_the_subject_threads_only_for_that_tickets_contact(mailbox, wang):
    ticket = intake.mail_receive(MAILBOX, raw_mail())
    stranger = raw_mail(
        subject=f"[{ticket.number}] hello",
        sender="Mallory <mallory@example.net>",
        message_id="<stranger@example.net>",
    )
    other = intake.mail_receive(MAILBOX, stranger)
    assert other.pk != ticket.pk  # a number alone does not let a stranger write into a ticket

    own = raw_mail(
        subject=encoded_word(f"[{ticket.number}] 补充", "gbk"),
        message_id="<own.2@mail.example.com>",
    )
    assert intake.mail_receive(MAILBOX, own).pk == ticket.pk


def test_a_mail_delivered_twice_changes_nothing(mailbox, wang):
    first = intake.mail_receive(MAILBOX, raw_mail())
    counts = (Ticket.objects.count(), TicketComment.objects.count(), DBTaskResult.objects.count())
    second = intake.mail_receive(MAILBOX, raw_mail())
    assert second.pk == first.pk
    assert (
        Ticket.objects.count(),
        TicketComment.objects.count(),
        DBTaskResult.objects.count(),
    ) == counts


def test_an_unknown_sender_becomes_a_new_customer(mailbox, org):
    ticket = intake.mail_receive(MAILBOX, raw_mail(sender="Li Lei <li.lei@example.org>"))
    assert ticket.customer is not None and ticket.customer.name == "Li Lei"
    assert ticket.region_id is None


def test_automatic_mail_opens_a_ticket_but_gets_no_reply(mailbox, wang):
    intake.mail_receive(
        MAILBOX, raw_mail(extra_headers="Auto-Submitted: auto-replied\r\n", message_id="<ooo@x>")
    )
    assert Ticket.objects.count() == 1
    assert not DBTaskResult.objects.exists()  # two auto-responders never answer each other


def test_attachments_are_kept_on_the_ticket(mailbox, wang):
    photo = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    raw = multipart_mail(
        [
            part("Content-Type: text/plain; charset=utf-8", "外机照片见附件".encode()),
            part(
                "Content-Type: image/png\nContent-Transfer-Encoding: base64\n"
                "Content-Disposition: attachment; filename*=utf-8''%E5%A4%96%E6%9C%BA.png",
                b64(photo),
            ),
        ]
    )
    ticket = intake.mail_receive(MAILBOX, raw)
    [kept] = Attachment.objects.filter(ticket=ticket)
    assert kept.name == "外机.png" and kept.size == len(photo)
    assert kept.file.read() == photo


def test_mail_to_an_unknown_address_is_refused(mailbox):
    from jingwei.tickets.mail import MailRejected

    assert intake.mailbox_accepts(MAILBOX.upper())
    assert not intake.mailbox_accepts("nobody@tickets.jingwei.example")
    with pytest.raises(MailRejected):
        intake.mail_receive("nobody@tickets.jingwei.example", raw_mail())


def test_the_owner_routed_to_is_told(mailbox, wang, org, admin, actor_of):
    from jingwei.tickets import services

    services.rule_save(
        actor=actor_of(admin),
        name="邮件",
        conditions={"field": "source", "op": "eq", "value": "email"},
        queue_id=None,
        assignment={"rule": "user", "employee_id": admin.pk},
    )
    ticket = intake.mail_receive(MAILBOX, raw_mail())
    assert ticket.owner_id == admin.pk
    assert Notification.objects.filter(recipient=admin, kind="ticket.assigned").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.django_db(transaction=True)
def test_through_a_real_smtp_server_on_loopback(mailbox, wang):
    port = _free_port()
    delivered: list[int] = []

    def deliver(rcpt: str, raw: bytes) -> None:
        delivered.append(intake.mail_receive(rcpt, raw).pk)

    controller = start_server("127.0.0.1", port, intake.mailbox_accepts, deliver)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail(WANG_ADDRESS, [MAILBOX], raw_mail())
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail(WANG_ADDRESS, ["nobody@elsewhere.example"], raw_mail())
    finally:
        stop_server(controller)
    [ticket] = Ticket.objects.filter(pk__in=delivered)
    assert ticket.title == SUBJECT and ticket.customer_id == wang.pk
