"""Inbound SMTP for email to ticket, on aiosmtpd.

The server answers for the mailboxes `accepts(rcpt)` says yes to, refuses messages over the size
limit before reading them, and hands each accepted message to `deliver(rcpt, raw)` once per
accepted recipient. Both callables run in a worker thread, never on the event loop, so they may
use the Django ORM. What the sending server hears:

- `deliver` returned: 250, the message is ours;
- `deliver` raised MailRejected: 550 with its reason, the sender gets a bounce;
- `deliver` raised anything else: 451, the sender keeps the message and retries later.

With several recipients, one failing makes the whole message 451 and the sender retries it for all
of them: `deliver` must be idempotent per (Message-ID, rcpt).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .mail import MAX_MESSAGE_BYTES, MailRejected

log = logging.getLogger(__name__)

Accepts = Callable[[str], bool]
Deliver = Callable[[str, bytes], None]
T = TypeVar("T")

SIZE_LIMIT = MAX_MESSAGE_BYTES - 1024
"""What the server takes: room is left for the Return-Path line it adds, so whatever it accepts
parse_message accepts too."""

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"


def _smtp_text(reason: str) -> str:
    """An SMTP reply is one ASCII line."""
    text = re.sub(r"[\r\n]+", " ", reason).encode("ascii", errors="replace").decode("ascii")
    return text.strip()[:200] or "message rejected"


class IntakeHandler:
    """aiosmtpd handler: RCPT asks `accepts`, DATA calls `deliver` for each accepted recipient."""

    def __init__(
        self,
        accepts: Accepts,
        deliver: Deliver,
        *,
        executor: ThreadPoolExecutor,
        max_size: int = SIZE_LIMIT,
    ) -> None:
        self.accepts = accepts
        self.deliver = deliver
        self.executor = executor
        self.max_size = max_size

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        # Off the event loop: Django refuses ORM calls from a thread with a running loop, and a
        # slow database must not stall other connections.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args))

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if any(address.lower() == known.lower() for known in envelope.rcpt_tos):
            return "250 2.1.5 OK"  # the same mailbox twice: deliver once
        try:
            accepted = await self._in_thread(self.accepts, address)
        except Exception:
            log.exception("mail intake: checking recipient %s failed", address)
            return TEMPORARY_FAILURE
        if not accepted:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > self.max_size:  # aiosmtpd enforces data_size_limit already; belt and braces
            return "552 5.3.4 Message too big"
        # Final delivery records the envelope sender (RFC 5321 4.4); "<>" marks a bounce.
        sender = re.sub(r"[\r\n<>]", "", envelope.mail_from or "")
        raw = b"Return-Path: <" + sender.encode("utf-8", errors="replace") + b">\r\n" + raw
        for rcpt in envelope.rcpt_tos:
            try:
                await self._in_thread(self.deliver, rcpt, raw)
            except MailRejected as rejected:
                log.info("mail intake: rejected mail for %s: %s", rcpt, rejected.reason)
                return f"550 5.6.0 {_smtp_text(rejected.reason)}"
            except Exception:
                log.exception("mail intake: delivering mail for %s failed", rcpt)
                return TEMPORARY_FAILURE
        return "250 2.0.0 OK"


def start_server(
    host: str,
    port: int,
    accepts: Accepts,
    deliver: Deliver,
    *,
    max_size: int = SIZE_LIMIT,
    workers: int = 4,
    server_hostname: str | None = None,
) -> Controller:
    """Listen on host:port in a background thread; returns once the server answers.
    `workers` bounds concurrent `accepts`/`deliver` calls (and so database connections)."""
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mail-intake")
    handler = IntakeHandler(accepts, deliver, executor=executor, max_size=max_size)
    controller = Controller(
        handler,
        hostname=host,
        port=port,
        server_hostname=server_hostname,
        data_size_limit=max_size,
        ident="Jingwei mail intake",
    )
    try:
        controller.start()
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return controller


def stop_server(controller: Controller) -> None:
    """Stop listening, then wait for deliveries under way to finish."""
    controller.stop()
    handler = controller.handler
    if isinstance(handler, IntakeHandler):
        handler.executor.shutdown(wait=True)
