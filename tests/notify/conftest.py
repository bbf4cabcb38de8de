"""The providers the outbound channels talk to, running on 127.0.0.1: the simulators of
jingwei.notify.simulators over real HTTP, and a real aiosmtpd server for mail."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from jingwei.notify.simulators import (
    AliyunSmsSimulator,
    DingTalkSimulator,
    WebhookReceiver,
    WeComSimulator,
    serve,
)

S = TypeVar("S")

SMS_KEY_ID, SMS_SECRET = "LTAI5tTestKeyId", "sms-secret-for-tests"
SMS_SIGN = "经纬服务"
SMS_TEMPLATES = {"SMS_1001": "工单${ticket}已超时，客户${customer}", "SMS_1002": "${text}"}
WECOM_CORP, WECOM_SECRET, WECOM_AGENT = "ww1234567890abcdef", "wecom-secret-for-tests", 1000005
WECOM_USERS = {"ZhangWei", "LiNa", "WangFang"}
ROBOT_TOKEN, ROBOT_SECRET = "robot-token-for-tests", "SEC0123456789abcdef0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-for-tests-0123"


class Clock:
    """The simulators' clock: starts at real time (the channels sign with real time), moves
    only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Provider(Generic[S]):
    sim: S
    url: str
    settings: dict[str, Any]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sms_provider(clock: Clock) -> Iterator[Provider[AliyunSmsSimulator]]:
    sim = AliyunSmsSimulator(
        {SMS_KEY_ID: SMS_SECRET}, sign_names={SMS_SIGN}, templates=SMS_TEMPLATES, clock=clock
    )
    with serve(sim) as served:
        yield Provider(
            sim,
            served.url,
            {
                "access_key_id": SMS_KEY_ID,
                "access_key_secret": SMS_SECRET,
                "sign_name": SMS_SIGN,
                "template_code": "SMS_1002",
                "endpoint": served.url + "/",
                "timeout_seconds": 5,
            },
        )


@pytest.fixture
def wecom_provider(clock: Clock) -> Iterator[Provider[WeComSimulator]]:
    sim = WeComSimulator(WECOM_CORP, WECOM_SECRET, WECOM_AGENT, users=WECOM_USERS, clock=clock)
    with serve(sim) as served:
        yield Provider(
            sim,
            served.url,
            {
                "corp_id": WECOM_CORP,
                "corp_secret": WECOM_SECRET,
                "agent_id": WECOM_AGENT,
                "api_base": served.url,
                "timeout_seconds": 5,
            },
        )


@pytest.fixture
def dingtalk_provider(clock: Clock) -> Iterator[Provider[DingTalkSimulator]]:
    sim = DingTalkSimulator({ROBOT_TOKEN: ROBOT_SECRET}, clock=clock)
    with serve(sim) as served:
        yield Provider(
            sim,
            served.url,
            {
                "access_token": ROBOT_TOKEN,
                "secret": ROBOT_SECRET,
                "robot_url": served.url + "/robot/send",
                "timeout_seconds": 5,
            },
        )


@pytest.fixture
def webhook_provider(clock: Clock) -> Iterator[Provider[WebhookReceiver]]:
    sim = WebhookReceiver(WEBHOOK_SECRET, clock=clock)
    with serve(sim) as served:
        yield Provider(
            sim,
            served.url,
            {"url": served.url + "/hooks/jingwei", "secret": WEBHOOK_SECRET, "timeout_seconds": 5},
        )


# --- mail -----------------------------------------------------------------------------------

MAIL_USER, MAIL_PASSWORD = "notify@jingwei.example", "smtp-password-for-tests"


@dataclass
class MailServer:
    """A real SMTP server (aiosmtpd) that keeps what it accepts; a test sets how it answers."""

    port: int = 0
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_reply: str | None = None  # e.g. "550 5.1.1 mailbox unavailable"
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == MAIL_USER
            and data.password.decode() == MAIL_PASSWORD
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer(port=_free_port())
    controller = Controller(
        server,
        hostname="127.0.0.1",
        port=server.port,
        authenticator=server.authenticate,
        # Loopback in a test: AUTH without STARTTLS is acceptable here, never in production.
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
