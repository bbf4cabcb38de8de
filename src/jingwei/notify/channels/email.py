"""E-mail over SMTP with Django's mail machinery: a plain-text part, plus an HTML alternative when
the message has one. Non-ASCII subjects and names go out as RFC 2047 encoded words in UTF-8
(Django's header encoding).

The Message-ID comes from the delivery's uid, so a resend of the same delivery (a worker died
after the server accepted it) carries the same id and mail clients thread or drop the copy.

SMTP says itself whether to try again: 4xx replies and lost connections are temporary, 5xx
replies (unknown mailbox, refused credentials) are not.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.utils import formataddr
from typing import Any, ClassVar

from django.conf import settings as django_settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection
from pydantic import Field, model_validator

from .base import Channel, ChannelSettings, DeliveryError, Message, Sent

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class EmailSettings(ChannelSettings):
    # Empty host: the platform's own outgoing mail (EMAIL_* settings / EMAIL_URL).
    host: str = ""
    port: int = Field(25, ge=1, le=65535)
    username: str = ""
    password: str = ""
    use_tls: bool = Field(False, description="STARTTLS（通常端口 587）")
    use_ssl: bool = Field(False, description="SMTPS（通常端口 465）")
    from_address: str = Field("", description="发件人；留空用系统默认发件人")
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_tls_mode(self) -> EmailSettings:
        if self.use_tls and self.use_ssl:
            raise ValueError("use_tls 和 use_ssl 只能选一个")
        return self


_NOT_ID = re.compile(r"[^A-Za-z0-9._-]")


def message_id(delivery_uid: str) -> str:
    local = _NOT_ID.sub("", delivery_uid) or "delivery"
    return f"<{local}@jingwei>"


def _one_line(text: str) -> str:
    # A header is one line; Django refuses a newline in the subject rather than folding it.
    return " ".join(text.split())


class EmailChannel(Channel):
    name = "email"
    label = "邮件"
    per_recipient = True
    address_kind = "email"
    settings_model = EmailSettings
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    def connection(self, s: EmailSettings) -> Any:
        if not s.host:
            return get_connection(fail_silently=False)
        # Explicit "" for the credentials: a tenant's server must never be sent the platform's
        # EMAIL_HOST_USER/PASSWORD (Django falls back to them on None).
        return get_connection(
            SMTP_BACKEND,
            fail_silently=False,
            host=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            use_ssl=s.use_ssl,
            timeout=s.timeout_seconds,
        )

    def build(self, message: Message, s: EmailSettings) -> EmailMultiAlternatives:
        to = (
            formataddr((message.recipient_name, message.address))
            if message.recipient_name
            else message.address
        )
        mail = EmailMultiAlternatives(
            subject=_one_line(message.title),
            body=message.text,
            from_email=s.from_address or django_settings.DEFAULT_FROM_EMAIL,
            to=[to],
            headers={
                "Message-ID": message_id(message.delivery_uid),
                "X-Jingwei-Delivery": message.delivery_uid,
                # RFC 3834: vacation responders stay quiet, and our own mail-to-ticket intake
                # does not turn a notification bounced back to it into a ticket.
                "Auto-Submitted": "auto-generated",
            },
        )
        if message.html:
            mail.attach_alternative(message.html, "text/html")
        return mail

    def send(self, message: Message, settings: Any) -> Sent:
        s = (
            settings
            if isinstance(settings, EmailSettings)
            else EmailSettings.model_validate(settings)
        )
        if not message.address:
            raise DeliveryError("收件人没有邮箱地址", retryable=False)
        try:
            mail = self.build(message, s)
            with self.connection(s) as connection:
                sent = connection.send_messages([mail])
        except (BadHeaderError, ValueError) as exc:
            raise DeliveryError(f"邮件无法组成：{exc}", retryable=False) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"邮件服务器拒收收件人 {message.address}：{_replies(exc.recipients.values())}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"邮件服务器拒绝了用户名或密码：{exc.smtp_code} {_text(exc.smtp_error)}",
                retryable=False,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(
                f"邮件服务器不支持所需功能（TLS 或登录）：{exc}", retryable=False
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # SMTPSenderRefused, SMTPDataError, SMTPConnectError, SMTPHeloError.
            raise DeliveryError(
                f"邮件服务器拒绝：{exc.smtp_code} {_text(exc.smtp_error)}",
                retryable=not 500 <= exc.smtp_code < 600,
            ) from exc
        except smtplib.SMTPException as exc:  # disconnected mid-way and the like
            raise DeliveryError(f"邮件发送中断：{exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"邮件服务器证书校验失败：{exc}", retryable=False) from exc
        except OSError as exc:  # refused, reset, timed out, unknown host
            raise DeliveryError(f"无法连接邮件服务器：{exc}") from exc
        if not sent:
            raise DeliveryError("邮件没有发出（没有有效收件人）", retryable=False)
        return Sent(provider_id=message_id(message.delivery_uid))


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else reply)[:200]


def _replies(replies: Any) -> str:
    return "；".join(f"{code} {_text(text)}" for code, text in replies)


email = EmailChannel()
