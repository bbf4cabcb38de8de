"""Entry points without a logged-in person: the public form, the service mailbox and WeCom
messages. Each is idempotent by the outside id it brings (a submission id, a Message-ID, a WeCom
msgid), so a retried delivery finds the ticket or comment the first one made.

A mail or a chat message cannot fill a form: its ticket starts with empty answers and the mail
text as the customer's first (customer-visible) comment; the 受理 step completes the form.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from jingwei.core.errors import Invalid, NotFound, Throttled
from jingwei.customers.identities import IdentityInput, IdentityKind

from ..models import Attachment, Mailbox, Source, Ticket, TicketComment, TicketTemplate, Visibility
from .attachments import new_key
from .tickets import (
    Created,
    NewTicket,
    comment_add,
    comment_within,
    create_in_transaction,
    ticket_create,
)

log = logging.getLogger(__name__)

MAX_ANSWERS_BYTES = 64 * 1024


# --- throttling ------------------------------------------------------------------------------


def throttle(key: str, *, limit: int, window: int) -> None:
    """At most `limit` hits per `window` seconds for `key` (a fixed window in the shared cache)."""
    bucket = f"throttle:{key}:{int(timezone.now().timestamp()) // window}"
    if cache.add(bucket, 1, timeout=window + 1):
        return
    try:
        count = cache.incr(bucket)
    except ValueError:  # expired between add and incr
        cache.add(bucket, 1, timeout=window + 1)
        return
    if count > limit:
        raise Throttled("提交过于频繁，请稍后再试", code="throttled")


# --- the public form -------------------------------------------------------------------------


def public_template(token: str) -> TicketTemplate:
    """The template whose public form this token opens; a closed form reads as missing."""
    found = (
        TicketTemplate.objects.filter(public_token=token, is_active=True)
        .exclude(public_token="")
        .select_related("current_version", "region")
        .first()
        if token
        else None
    )
    if found is None or found.current_version is None:
        raise NotFound("表单不存在或已关闭", field="token")
    return found


@dataclass
class PublicSubmission:
    answers: Mapping[str, Any]
    submission_id: str
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""
    honeypot: str = ""  # a field people never see: a value means a bot filled the form


def public_form_submit(
    *, token: str, submission: PublicSubmission, client_ip: str
) -> Created | None:
    """A ticket from the public form. None: the honeypot was filled (the bot is told it worked
    and nothing is stored). Rate-limited per address and form."""
    template = public_template(token)
    throttle(
        f"public:{template.pk}:{client_ip}",
        limit=settings.PUBLIC_FORM_RATE_LIMIT,
        window=settings.PUBLIC_FORM_RATE_WINDOW,
    )
    if submission.honeypot.strip():
        log.info("public form %s: honeypot filled from %s, dropped", template.pk, client_ip)
        return None
    size = len(json.dumps(submission.answers, ensure_ascii=False, default=str).encode())
    if size > MAX_ANSWERS_BYTES:
        raise Invalid(
            f"表单内容过大（{size} 字节，上限 {MAX_ANSWERS_BYTES}）",
            code="too_large",
            field="answers",
        )
    if not submission.submission_id.strip():
        raise Invalid("缺少提交编号", code="required", field="submission_id")
    return ticket_create(
        actor=None,
        tenant_id=template.tenant_id,
        new=NewTicket(
            template_key=template.key,
            region_id=template.region_id,
            answers=submission.answers,
            source=Source.PUBLIC_FORM,
            source_key=f"{template.pk}:{submission.submission_id.strip()}",
            contact_name=submission.contact_name,
            contact_phone=submission.contact_phone,
            contact_email=submission.contact_email,
        ),
    )


# --- the service mailbox ---------------------------------------------------------------------


def _mailbox(address: str) -> Mailbox | None:
    found = list(
        Mailbox.objects.filter(address__iexact=address.strip(), is_active=True).select_related(
            "template"
        )[:2]
    )
    # An address two tenants claim leads nowhere (mailbox_save refuses it; this is the guard).
    return found[0] if len(found) == 1 else None


def mailbox_accepts(rcpt: str) -> bool:
    """Whether the SMTP server takes mail for this recipient."""
    return _mailbox(rcpt) is not None


def _thread(mailbox: Mailbox, mail: Any) -> Ticket | None:
    """The ticket a mail answers: by the ids it replies to (our replies and earlier mails of
    the thread, most recent first), else by a ticket number in its subject when the sender is
    that ticket's contact (a number alone must not let a stranger write into a ticket)."""
    from ..mail import ticket_number_in

    ids = [i for i in mail.thread_ids if i]
    tenant = mailbox.tenant_id
    if ids:
        by_comment = dict(
            TicketComment.objects.filter(tenant_id=tenant, message_id__in=ids).values_list(
                "message_id", "ticket_id"
            )
        )
        by_source = dict(
            Ticket.objects.filter(
                tenant_id=tenant, source=Source.EMAIL, source_key__in=ids
            ).values_list("source_key", "pk")
        )
        for mid in ids:
            found = by_comment.get(mid) or by_source.get(mid)
            if found is not None:
                return Ticket.objects.get(pk=found)
    number = ticket_number_in(mail.subject)
    if number:
        ticket = Ticket.objects.filter(tenant_id=tenant, number=number).first()
        if (
            ticket is not None
            and ticket.contact_email
            and (ticket.contact_email.lower() == mail.from_address.lower())
        ):
            return ticket
    return None


def _mail_text(mail: Any) -> str:
    # A reply that only quotes keeps its quote rather than nothing.
    return str(mail.text or mail.full_text or "（空白邮件）")


def mail_receive(rcpt: str, raw: bytes) -> Ticket:
    """Deliver one mail to the mailbox `rcpt`: a reply lands as the customer's comment on its
    ticket, anything else opens a ticket, and the customer gets a reply with the progress link
    and its QR code (a task: the SMTP session does not wait for it; never to automatic mail).
    A mail delivered twice (same Message-ID) changes nothing the second time."""
    from ..mail import MailRejected, parse_message

    mailbox = _mailbox(rcpt)
    if mailbox is None:
        raise MailRejected(f"no such mailbox: {rcpt}")
    mail = parse_message(raw)
    if not mail.from_address:
        raise MailRejected("the message names no sender")
    ticket = _thread(mailbox, mail)
    if ticket is not None:
        comment_add(
            actor=None,
            ticket=ticket,
            body=_mail_text(mail),
            visibility=Visibility.PUBLIC,
            via=Source.EMAIL,
            author_name=mail.from_name or mail.from_address,
            message_id=mail.message_id,
        )
        _store_mail_attachments(ticket, mail)
        return ticket
    with transaction.atomic(durable=True):
        created = create_in_transaction(
            actor=None,
            tenant_id=mailbox.tenant_id,
            new=NewTicket(
                template_key=mailbox.template.key,
                answers={},
                form_pending=True,
                source=Source.EMAIL,
                source_key=mail.message_id,
                title=mail.subject or "（无主题邮件）",
                region_id=mailbox.region_id,
                contact_name=mail.from_name,
                contact_email=mail.from_address,
            ),
        )
        ticket = created.ticket
        if not created.created:
            return ticket
        comment_within(
            None,
            ticket,
            body=_mail_text(mail),
            visibility=Visibility.PUBLIC,
            via=Source.EMAIL,
            author_name=mail.from_name or mail.from_address,
            message_id=f"{mail.message_id}#body",
        )
        _store_mail_attachments(ticket, mail)
        if not mail.auto_submitted:
            from ..tasks import send_acknowledgement

            send_acknowledgement.enqueue(
                ticket_id=ticket.pk,
                mailbox_address=mailbox.address,
                to_address=mail.reply_to or mail.from_address,
                subject=mail.subject,
                message_id=mail.message_id,
                references=list(mail.references),
            )
    return ticket


def _store_mail_attachments(ticket: Ticket, mail: Any) -> None:
    for part in mail.attachments:
        content = part.content
        digest = hashlib.sha256(content).hexdigest()
        if Attachment.objects.filter(ticket=ticket, sha256=digest).exists():
            continue
        row = Attachment(
            tenant_id=ticket.tenant_id,
            key=new_key(),
            ticket=ticket,
            name=(part.filename or "附件")[:200],
            content_type=part.content_type[:100],
            size=len(content),
            sha256=digest,
            created_at=timezone.now(),
        )
        row.file.save(row.name, ContentFile(content), save=False)
        row.save()


def acknowledgement_send(
    *,
    ticket_id: int,
    mailbox_address: str,
    to_address: str,
    subject: str,
    message_id: str,
    references: list[str],
) -> str:
    """The reply to a new mail ticket: its number, the progress link and its QR code, threaded
    to the customer's mail. Kept as a customer-visible comment with its Message-ID, so the
    customer's answer to it threads into the ticket. Returns the reply's Message-ID; a mail
    server that is down raises (the task is retried) and never touches the ticket."""
    from ..mail import compose_reply, send_reply
    from .progress import progress_url, qr_png

    ticket = Ticket.objects.get(pk=ticket_id)
    url = progress_url(ticket)
    text = (
        f"{ticket.contact_name or '您好'}：\n\n我们已收到您的来信，工单号 {ticket.number}。"
        f"\n处理进度可随时查看：{url}\n\n回复本邮件即可补充信息。"
    )
    message = compose_reply(
        from_address=mailbox_address,
        to_address=to_address,
        subject=f"Re: [{ticket.number}] {subject}",
        body_text=text,
        in_reply_to=message_id,
        references=[*references, message_id],
        qr_png=qr_png(url),
        progress_url=url,
        auto_submitted=True,
    )
    send_reply(message)
    reply_id = str(message["Message-ID"] or "").strip().strip("<>")
    if reply_id:
        TicketComment.objects.get_or_create(
            tenant_id=ticket.tenant_id,
            message_id=reply_id,
            defaults={
                "ticket": ticket,
                "author_name": "系统",
                "body": text,
                "visibility": Visibility.PUBLIC,
                "via": Source.EMAIL,
                "created_at": timezone.now(),
            },
        )
    return reply_id


# --- WeCom messages --------------------------------------------------------------------------


@dataclass
class WecomMessage:
    """A customer's message to the company's WeCom, as the WeCom integration hands it over."""

    tenant_id: int
    external_userid: str
    msgid: str
    text: str
    template_key: str
    sent_at: datetime | None = None
    name: str = ""
    region_id: int | None = None


def wecom_message_receive(message: WecomMessage) -> Ticket:
    """The hook the WeCom integration calls: a message naming one of this customer's open ticket
    numbers is added to that ticket; anything else opens a ticket from `template_key`. The msgid
    makes a redelivery change nothing."""
    from ..mail import ticket_number_in

    if not message.msgid.strip():
        raise Invalid("缺少消息编号 msgid", code="required", field="msgid")
    identity = IdentityInput(kind=IdentityKind.WECOM, value=message.external_userid)
    number = ticket_number_in(message.text)
    if number:
        ticket = (
            Ticket.objects.filter(tenant_id=message.tenant_id, number=number)
            .select_related("customer")
            .first()
        )
        if ticket is not None and _same_customer(ticket, message):
            comment_add(
                actor=None,
                ticket=ticket,
                body=message.text,
                visibility=Visibility.PUBLIC,
                via=Source.WECOM,
                author_name=message.name or "客户",
                message_id=f"wecom:{message.msgid}",
            )
            return ticket
    created = ticket_create(
        actor=None,
        tenant_id=message.tenant_id,
        new=NewTicket(
            template_key=message.template_key,
            answers={},
            form_pending=True,
            source=Source.WECOM,
            source_key=message.msgid,
            title=message.text.strip().splitlines()[0][:100] if message.text.strip() else "",
            region_id=message.region_id,
            contact_name=message.name,
            identities=[identity],
        ),
    )
    if created.created:
        comment_add(
            actor=None,
            ticket=created.ticket,
            body=message.text or "（空消息）",
            visibility=Visibility.PUBLIC,
            via=Source.WECOM,
            author_name=message.name or "客户",
            message_id=f"wecom:{message.msgid}",
        )
    return created.ticket


def _same_customer(ticket: Ticket, message: WecomMessage) -> bool:
    from jingwei.customers.identities import identity_key
    from jingwei.customers.models import Identity

    if ticket.customer_id is None:
        return False
    key = identity_key(IdentityKind.WECOM, message.external_userid)
    return Identity.objects.filter(
        tenant_id=message.tenant_id,
        customer_id=ticket.customer_id,
        kind=key.kind,
        namespace=key.namespace,
        value=key.value,
        status="active",
    ).exists()


def mailbox_save(
    *, actor: Any, address: str, template_id: int, region_id: int | None = None, active: bool = True
) -> Mailbox:
    """Open (or re-point) a service mailbox. An address another tenant uses is refused: a mail's
    recipient must lead to one company."""
    from jingwei.audit.services import audit_record
    from jingwei.core.errors import Conflict
    from jingwei.org.models import Region

    from .common import MANAGE

    actor.require_tenant_wide(MANAGE)
    address = address.strip().lower()
    with transaction.atomic(durable=True):
        if Mailbox.objects.filter(address=address).exclude(tenant_id=actor.tenant_id).exists():
            raise Conflict("该邮箱地址已被使用", code="address_taken", field="address")
        if not TicketTemplate.objects.filter(
            tenant_id=actor.tenant_id, pk=template_id, region__isnull=True
        ).exists():
            raise Invalid(
                "工单模板不存在（请选择总部模板）", code="invalid_reference", field="template_id"
            )
        if (
            region_id is not None
            and not Region.objects.filter(tenant_id=actor.tenant_id, pk=region_id).exists()
        ):
            raise Invalid("区域不存在", code="invalid_reference", field="region_id")
        mailbox, _ = Mailbox.objects.update_or_create(
            tenant_id=actor.tenant_id,
            address=address,
            defaults={"template_id": template_id, "region_id": region_id, "is_active": active},
        )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.mailbox.saved",
            subject=mailbox,
            after={
                "address": address,
                "template": template_id,
                "region": region_id,
                "active": active,
            },
        )
        return mailbox
