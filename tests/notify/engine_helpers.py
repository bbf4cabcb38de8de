"""Shared set-up for the rules-engine tests: a recording channel, templates and rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from jingwei.notify.channels import CHANNELS, Channel, DeliveryError, Message, Sent
from jingwei.notify.models import ChannelConfig
from jingwei.notify.services import rules
from jingwei.org.scope import actor_for

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at_shanghai(hour: int, minute: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


class Recorder(Channel):
    """A per-recipient channel addressed by mobile number that records what it was asked to
    send, and can be told to fail."""

    name = "recorder"
    label = "测试渠道"
    address_kind = "phone"
    fail_with: ClassVar[DeliveryError | None] = None
    sent: ClassVar[list[Message]] = []

    def send(self, message: Message, settings: Any) -> Sent:
        if Recorder.fail_with is not None:
            raise Recorder.fail_with
        Recorder.sent.append(message)
        return Sent(provider_id=f"r{len(Recorder.sent)}")


@pytest.fixture
def recorder(org: Any) -> Iterator[type[Recorder]]:
    CHANNELS["recorder"] = Recorder()
    Recorder.sent, Recorder.fail_with = [], None
    ChannelConfig.objects.create(tenant=org.tenant, channel="recorder", settings={})
    yield Recorder
    CHANNELS.pop("recorder", None)


def make_template(admin: Any, **overrides: Any) -> Any:
    data = {
        "key": "complaint",
        "name": "客诉提醒",
        "title": "客诉 {{ ticket.number }} 待处理",
        "text": "客户 {{ customer.name }} 的投诉已 {{ minutes }} 分钟未处理。",
        **overrides,
    }
    return rules.template_save(actor=actor_for(admin), data=data)


def make_rule(admin: Any, template: Any, **overrides: Any) -> Any:
    data = {
        "name": "客诉超时",
        "event": "ticket.sla.breached",
        "recipients": [{"kind": "role", "role": "客诉主管", "scope": "region"}],
        "channels": {"info": ["inapp"], "warning": ["inapp"], "urgent": ["inapp"]},
        "template_id": template.pk,
        **overrides,
    }
    return rules.rule_save(actor=actor_for(admin), data=data)
