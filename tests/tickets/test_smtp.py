"""The inbound SMTP server (jingwei.tickets.smtp): a real aiosmtpd server on 127.0.0.1, mail sent
with smtplib as a customer's mail server would. No database: `deliver` here records what it got."""

from __future__ import annotations

import asyncio
import io
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from django.core.management import load_command_class
from django.core.management.base import OutputWrapper
from django.test import override_settings

from jingwei.tickets.mail import (
    MAX_MESSAGE_BYTES,
    InboundMail,
    MailRejected,
    compose_reply,
    parse_message,
    send_reply,
)
from jingwei.tickets.smtp import start_server, stop_server

from .mail_samples import (
    MAILBOX,
    SUBJECT,
    WANG,
    WANG_ADDRESS,
    b64,
    encoded_word,
    journey_mail,
    multipart_mail,
    part,
    raw_mail,
)

OTHER_MAILBOX = "sales@tickets.jingwei.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    """What the server handed to `deliver`, and how `deliver` should behave next."""

    port: int
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    attempts: int = 0
    fail_with: Exception | None = None
    accepts_fails: bool = False
    loop_in_deliver: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepts(self, rcpt: str) -> bool:
        if self.accepts_fails:
            raise RuntimeError("database unavailable")
        return rcpt.lower() in {MAILBOX, OTHER_MAILBOX}

    def deliver(self, rcpt: str, raw: bytes) -> None:
        with self.lock:
            self.attempts += 1
            self.loop_in_deliver.append(_has_running_loop())
            if self.fail_with is not None:
                raise self.fail_with
            self.delivered.append((rcpt, raw))

    def only_mail(self) -> InboundMail:
        (delivery,) = self.delivered
        return parse_message(delivery[1])

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30)

    def send(self, raw: bytes, to: list[str] | None = None) -> dict[str, tuple[int, bytes]]:
        with self.client() as client:
            return client.sendmail(WANG_ADDRESS, to or [MAILBOX], raw)


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _serve(**kwargs: int) -> Iterator[Inbox]:
    inbox = Inbox(port=free_port())
    controller = start_server("127.0.0.1", inbox.port, inbox.accepts, inbox.deliver, **kwargs)
    try:
        yield inbox
    finally:
        stop_server(controller)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    yield from _serve()


@pytest.fixture
def small_inbox() -> Iterator[Inbox]:
    """A server with a 64 KiB limit, to go over it without sending 25 MiB."""
    yield from _serve(max_size=64 * 1024)


# --- what arrives ---------------------------------------------------------------------------


def test_wang_jianguos_mail_arrives_and_reads_right(inbox):
    # When 王建国's mail server hands over his GB2312 mail
    refused = inbox.send(journey_mail())

    # Then it is accepted and delivered once, readable as he wrote it
    assert refused == {}
    (rcpt, raw) = inbox.delivered[0]
    assert rcpt == MAILBOX
    mail = inbox.only_mail()
    assert (mail.subject, mail.from_name, mail.from_address) == (SUBJECT, WANG, WANG_ADDRESS)
    assert mail.text == "客厅的空调开机半小时还是吹热风，型号 KFR-35GW。"
    # and the envelope sender is recorded as a final delivery does
    assert raw.startswith(f"Return-Path: <{WANG_ADDRESS}>\r\n".encode())


@pytest.mark.parametrize(
    ("subject", "charset"),
    [
        (SUBJECT, "gb2312"),
        ("空调不制冷了，朱镕基路门店", "gbk"),
        ("空调不制冷了 䶮", "gb18030"),
        ("空调不制冷了 🙁", "utf-8"),
    ],
)
def test_chinese_subjects_arrive_decoded(inbox, subject, charset):
    inbox.send(raw_mail(subject=encoded_word(subject, charset)))
    assert inbox.only_mail().subject == subject


def test_an_undeclared_8bit_gbk_subject_arrives_decoded(inbox):
    inbox.send(raw_mail(subject=f"回复：{SUBJECT}".encode("gbk")))
    assert inbox.only_mail().subject == f"回复：{SUBJECT}"


def test_a_gbk_body_arrives_decoded(inbox):
    body = "故障现象：开机后不制冷。\r\n.地址：上海市浦东新区\r\n".encode(
        "gbk"
    )  # a line starting with "."
    inbox.send(raw_mail(content_type="text/plain; charset=GBK", body=body))
    assert inbox.only_mail().text == "故障现象：开机后不制冷。\n.地址：上海市浦东新区"


def test_an_html_only_mail_arrives_as_text(inbox):
    html = "<html><body><p>空调不制冷了</p><p>电话&nbsp;138-0000-0000</p></body></html>"
    inbox.send(
        raw_mail(
            content_type="text/html; charset=utf-8",
            transfer_encoding="base64",
            body=b64(html.encode()),
        )
    )
    assert inbox.only_mail().text == "空调不制冷了\n\n电话 138-0000-0000"


def test_attachments_with_chinese_rfc2231_names_arrive_whole(inbox):
    photo = bytes(range(256)) * 40
    inbox.send(
        multipart_mail(
            [
                part("Content-Type: text/plain; charset=utf-8", "见附件".encode()),
                part(
                    "Content-Type: image/jpeg\nContent-Transfer-Encoding: base64\n"
                    f"Content-Disposition: attachment; filename*=UTF-8''{quote('室外机照片.jpg')}",
                    b64(photo),
                ),
                part(
                    "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
                    "Content-Disposition: attachment; filename*=gbk''"
                    + "".join(f"%{b:02X}" for b in "发票.pdf".encode("gbk")),
                    b64(b"%PDF-1.4"),
                ),
            ]
        )
    )
    mail = inbox.only_mail()
    assert [(a.filename, a.content) for a in mail.attachments] == [
        ("室外机照片.jpg", photo),
        ("发票.pdf", b"%PDF-1.4"),
    ]


def test_a_reply_arrives_with_its_thread(inbox):
    inbox.send(
        raw_mail(
            subject=f"Re: [GD20261124-0001] {encoded_word(SUBJECT, 'gb2312')}",
            extra_headers="In-Reply-To: <ack-1@tickets.jingwei.example>\r\nReferences: <20261124100000.4711@mail.example.com> <ack-1@tickets.jingwei.example>\r\n",
        )
    )
    mail = inbox.only_mail()
    assert mail.in_reply_to == ("ack-1@tickets.jingwei.example",)
    assert mail.references == (
        "20261124100000.4711@mail.example.com",
        "ack-1@tickets.jingwei.example",
    )


# --- who it is for --------------------------------------------------------------------------


def test_mail_for_an_unknown_mailbox_is_refused(inbox):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        inbox.send(journey_mail(), to=["nobody@tickets.jingwei.example"])
    assert refused.value.recipients["nobody@tickets.jingwei.example"][0] == 550
    assert inbox.attempts == 0


def test_each_accepted_mailbox_gets_the_mail_once(inbox):
    refused = inbox.send(
        journey_mail(), to=[MAILBOX, "nobody@x.example", OTHER_MAILBOX, MAILBOX.upper()]
    )
    assert refused["nobody@x.example"][0] == 550
    assert [rcpt for rcpt, _ in inbox.delivered] == [MAILBOX, OTHER_MAILBOX]


def test_deliver_runs_off_the_event_loop_so_it_may_use_the_orm(inbox):
    inbox.send(journey_mail())
    assert inbox.loop_in_deliver == [False]


# --- size -----------------------------------------------------------------------------------


def test_a_message_declared_too_big_is_refused_before_it_is_sent(inbox):
    # smtplib declares SIZE=... since the server advertises SIZE; the server refuses at MAIL FROM
    too_big = raw_mail(body=b"x" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        inbox.send(too_big)
    assert refused.value.smtp_code == 552
    assert inbox.attempts == 0


def test_a_message_that_turns_out_too_big_is_refused(small_inbox):
    # A client that declares no size: the server reads on, then refuses with 552
    with small_inbox.client() as client:
        client.ehlo()
        assert client.mail(WANG_ADDRESS)[0] == 250
        assert client.rcpt(MAILBOX)[0] == 250
        code, _ = client.data(raw_mail(body=(b"x" * 78 + b"\r\n") * 900))
    assert code == 552
    assert small_inbox.attempts == 0


def test_a_message_within_the_limit_is_taken(small_inbox):
    small_inbox.send(raw_mail(body=(b"x" * 78 + b"\r\n") * 750))
    assert len(small_inbox.delivered) == 1


# --- failures -------------------------------------------------------------------------------


def test_a_failing_delivery_is_a_temporary_failure_and_the_retry_lands(inbox):
    # Given the database is down while the mail comes in
    inbox.fail_with = RuntimeError("database unavailable")
    with pytest.raises(smtplib.SMTPDataError) as failed:
        inbox.send(journey_mail())
    # Then the sending server hears 451 and keeps the mail
    assert failed.value.smtp_code == 451
    assert inbox.delivered == []

    # When it retries after the database is back, the mail lands
    inbox.fail_with = None
    inbox.send(journey_mail())
    assert inbox.only_mail().subject == SUBJECT


def test_a_rejected_mail_is_refused_for_good_with_the_reason(inbox):
    inbox.fail_with = MailRejected("more than 20 attachments")
    with pytest.raises(smtplib.SMTPDataError) as failed:
        inbox.send(journey_mail())
    assert failed.value.smtp_code == 550
    assert b"more than 20 attachments" in failed.value.smtp_error


def test_a_chinese_rejection_reason_still_makes_a_valid_reply(inbox):
    inbox.fail_with = MailRejected("没有这个服务邮箱")
    with pytest.raises(smtplib.SMTPDataError) as failed:
        inbox.send(journey_mail())
    assert failed.value.smtp_code == 550


def test_a_failing_recipient_check_is_a_temporary_failure(inbox):
    inbox.accepts_fails = True
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        inbox.send(journey_mail())
    assert refused.value.recipients[MAILBOX][0] == 451
    assert inbox.attempts == 0


# --- replies over the wire, and the command --------------------------------------------------


def test_a_reply_sent_through_djangos_smtp_backend_arrives_threaded(inbox):
    message = compose_reply(
        from_address=f"经纬客服 <{MAILBOX}>",
        to_address=f"{WANG} <{OTHER_MAILBOX}>",  # our own server stands in for his
        subject=f"Re: [GD20261124-0001] {SUBJECT}",
        body_text="我们已收到您的来信。",
        in_reply_to="20261124100000.4711@mail.example.com",
        references=[],
        qr_png=b"\x89PNG fake",
        progress_url="https://jingwei.example/p/Xy7kQ2",
    )
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=inbox.port,
        EMAIL_USE_TLS=False,
        EMAIL_HOST_USER="",
    ):
        assert send_reply(message) == 1

    (rcpt, raw) = inbox.delivered[0]
    mail = parse_message(raw)
    assert rcpt == OTHER_MAILBOX
    assert mail.subject == "Re: [GD20261124-0001] 空调不制冷了"
    assert mail.message_id == str(message["Message-ID"]).strip("<>")
    assert mail.in_reply_to == ("20261124100000.4711@mail.example.com",)
    assert [a.content for a in mail.attachments] == [b"\x89PNG fake"]
    assert raw.startswith(f"Return-Path: <{MAILBOX}>".encode())


def test_the_mailserver_command_serves_the_intake_services(monkeypatch):
    # Given the intake services (stood in for here: the command imports them when it runs)
    received: list[tuple[str, bytes]] = []
    from jingwei.tickets.services import intake

    monkeypatch.setattr(intake, "mailbox_accepts", lambda rcpt: rcpt == MAILBOX)
    monkeypatch.setattr(intake, "mail_receive", lambda rcpt, raw: received.append((rcpt, raw)))
    command = load_command_class("jingwei.tickets", "mailserver")
    port = free_port()
    out = io.StringIO()
    options = command.create_parser("jingwei", "mailserver").parse_args(["--port", str(port)])
    command.stdout = OutputWrapper(out)
    runner = threading.Thread(target=command.handle, kwargs=vars(options))

    # When `jingwei mailserver --port ...` runs
    runner.start()
    try:
        with _connected(port) as client:
            client.sendmail(WANG_ADDRESS, [MAILBOX], journey_mail())
    finally:
        command.stopping.set()
        runner.join()

    # Then the mail went to mail_receive, and the command stopped when told to
    (rcpt, raw) = received[0]
    assert rcpt == MAILBOX and parse_message(raw).subject == SUBJECT
    assert out.getvalue().splitlines() == [
        f"mail intake listening on 127.0.0.1:{port}",
        "mail intake stopped",
    ]


def _connected(port: int) -> smtplib.SMTP:
    deadline = time.monotonic() + 30
    while True:
        try:
            return smtplib.SMTP("127.0.0.1", port, timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
