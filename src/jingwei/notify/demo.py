"""Demo notifications: the rules the seed describes, a 华东 dispatch roster for the coming two
weeks, and channels pointed at the local simulators (`jingwei simulators`, which `make run`
starts on port 8025), so an S-level ticket in the demo reaches WeCom, the DingTalk group and the
customer's phone — each visible in the simulators' output."""

from __future__ import annotations

import os
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone

from jingwei.org.models import Employee, Region, Tenant
from jingwei.org.scope import actor_for

from .models import ChannelConfig, MessageTemplate, Roster, Rule
from .services import config, rules
from .simulators import DEMO_SMS_TEMPLATE, Simulators

SIMULATORS_URL = f"http://127.0.0.1:{os.environ.get('NOTIFY_SIMULATORS_PORT') or 8025}"

TEMPLATES: list[dict[str, Any]] = [
    {
        "key": "s-ticket",
        "name": "S 级工单告警",
        "title": "S 级工单 {{ ticket.number }}：{{ ticket.title }}",
        "text": "联系人 {{ customer.name }}，请立即派单。进度：{{ ticket.url }}",
    },
    {
        "key": "ticket-received",
        "name": "受理短信（客户）",
        "title": "工单已受理",
        "text": "您的工单 {{ ticket.number }} 已受理，进度：{{ ticket.url }}",
        "sms_template_code": DEMO_SMS_TEMPLATE,
        "sms_params": {"ticket": "{{ ticket.number }}"},
    },
    {
        "key": "sla-alert",
        "name": "流程超时预警",
        "title": "{{ title }}",
        "text": "{{ body }}（实例 {{ instance_id }}）",
    },
    {
        "key": "ticket-assigned",
        "name": "派单通知（集成）",
        "title": "工单 {{ ticket.number }} 已派给新负责人",
        "text": "{{ reason }}",
    },
]


def _person(tenant_id: int, username: str) -> Employee:
    return Employee.objects.get(tenant_id=tenant_id, user__username=username)


def load_demo_notifications(tenant_id: int) -> None:
    admin = actor_for(_person(tenant_id, "admin"))
    for name, settings in Simulators.channel_settings(SIMULATORS_URL).items():
        if not ChannelConfig.objects.filter(tenant_id=tenant_id, channel=name).exists():
            config.channel_config_save(actor=admin, channel=name, settings=settings)
    templates = {}
    for data in TEMPLATES:
        found = MessageTemplate.objects.filter(tenant_id=tenant_id, key=data["key"]).first()
        templates[data["key"]] = found or rules.template_save(actor=admin, data=data)

    east = Region.objects.get(tenant_id=tenant_id, name="华东")
    day, night = _person(tenant_id, "liuyang"), _person(tenant_id, "chenjing")
    roster = Roster.objects.filter(tenant_id=tenant_id, name="华东调度值班").first()
    if roster is None:
        roster = config.roster_save(
            actor=admin, name="华东调度值班", region_id=east.pk, fallback_id=day.pk
        )
        tz = ZoneInfo(Tenant.objects.get(pk=tenant_id).timezone)
        today = timezone.localdate(timezone=tz)
        shifts = []
        for n in range(-1, 14):
            morning = datetime.combine(today + timedelta(days=n), time(8), tzinfo=tz)
            shifts.append((day.pk, morning, morning + timedelta(hours=12)))
            shifts.append((night.pk, morning + timedelta(hours=12), morning + timedelta(hours=24)))
        config.shifts_add(actor=admin, roster_id=roster.pk, shifts=shifts)

    demo_rules = [
        {
            "name": "S 级工单呼叫值班调度",
            "event": "ticket.created",
            "condition": 'ticket.priority == "S"',
            "recipients": [{"kind": "duty", "roster_id": roster.pk}],
            "channels": {"urgent": ["inapp", "wecom", "dingtalk"]},
            "template_id": templates["s-ticket"].pk,
        },
        {
            "name": "工单受理短信",
            "event": "ticket.created",
            "condition": 'has(customer.phone) && customer.phone != ""',
            "recipients": [{"kind": "customer"}],
            "channels": {"info": ["sms"], "urgent": ["sms"]},
            "template_id": templates["ticket-received"].pk,
        },
        {
            "name": "流程超时升级到企业微信与钉钉群",
            "event": "flows.sla_alert",
            "recipients": [{"kind": "role", "role": "客诉主管", "scope": "region"}],
            "channels": {"urgent": ["wecom", "dingtalk"], "warning": ["wecom"]},
            "template_id": templates["sla-alert"].pk,
        },
        {
            "name": "派单推送到外部系统",
            "event": "ticket.assigned",
            "recipients": [{"kind": "field", "field": "owner_id"}],
            "channels": {"info": ["webhook"], "urgent": ["webhook"]},
            "template_id": templates["ticket-assigned"].pk,
        },
    ]
    for position, data in enumerate(demo_rules, start=1):
        if not Rule.objects.filter(tenant_id=tenant_id, name=data["name"]).exists():
            rules.rule_save(actor=admin, data={**data, "position": position * 10})
