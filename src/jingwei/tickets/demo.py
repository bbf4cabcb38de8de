"""The shipped ticket templates (data: builtin_forms/*.json on the shipped flows) and, for the demo
tenant, queues, routing rules, the service mailbox, the 华东 override and a few tickets, so that
journey A (JOURNEYS.md) can be walked. Loading again changes nothing."""

from __future__ import annotations

from typing import Any

from jingwei.org.models import Employee, Region
from jingwei.org.scope import Actor, actor_for

from . import services
from .forms import BUILTIN_FORMS, builtin_form
from .models import Mailbox, Queue, RoutingRule, Source, TicketTemplate
from .services.templates import global_template_create

# template key: (form, flow key, category, default priority)
SHIPPED_TEMPLATES = {
    "after_sales_repair": ("after_sales_repair", "after_sales", "售后", "B"),
    "shop_return": ("shop_return", "shop_return", "退换货", "B"),
    "course_trial": ("course_trial", "course_trial", "课程", "C"),
    "complaint": ("complaint", "complaint", "投诉", "B"),
}

# 华东's own field on the after-sales template (DESIGN: a region adds what only it needs).
COLD_CHAIN_FIELDS = {
    "schema": {
        "properties": {
            "cold_chain_tracking": {
                "type": "string",
                "maxLength": 40,
                "x-visible-when": {"field": "service_type", "op": "eq", "value": "售后服务"},
            }
        }
    },
    "ui": {
        "cold_chain_tracking": {
            "label": "冷链物流追踪号",
            "widget": "text",
            "order": 900,
            "help": "冷链设备返修时填写物流单号",
        }
    },
}
DEMO_MAILBOX = "service@jingwei-demo.example"


def load_shipped_templates(tenant_id: int) -> list[TicketTemplate]:
    """The four shipped templates as global templates of the tenant (the shipped flows must be
    loaded first)."""
    out = []
    for key, (form, flow_key, category, priority) in SHIPPED_TEMPLATES.items():
        found = TicketTemplate.objects.filter(
            tenant_id=tenant_id, key=key, region__isnull=True
        ).first()
        if found is None:
            found = global_template_create(
                tenant_id=tenant_id,
                actor=None,
                key=key,
                name=BUILTIN_FORMS[form],
                form=builtin_form(form),
                flow_key=flow_key,
                category=category,
                default_priority=priority,
            )
        out.append(found)
    return out


def _admin(tenant_id: int) -> Actor:
    employee = Employee.objects.get(tenant_id=tenant_id, user__username="admin")
    return actor_for(employee)


def _people(tenant_id: int, *usernames: str) -> list[int]:
    return list(
        Employee.objects.filter(tenant_id=tenant_id, user__username__in=usernames)
        .order_by("employee_no")
        .values_list("pk", flat=True)
    )


def load_demo_tickets(tenant_id: int) -> None:
    """Queues, routing rules, the mailbox, the 华东 override, the public form and a few tickets."""
    templates = {t.key: t for t in load_shipped_templates(tenant_id)}
    admin = _admin(tenant_id)
    regions = {r.name: r for r in Region.objects.filter(tenant_id=tenant_id)}
    if not TicketTemplate.objects.filter(
        tenant_id=tenant_id, key="after_sales_repair", region=regions["华东"]
    ).exists():
        services.override_create(
            actor=admin,
            template_id=templates["after_sales_repair"].pk,
            region_id=regions["华东"].pk,
            own_fields=COLD_CHAIN_FIELDS,
            note="华东增加冷链物流追踪",
        )
    if not templates["after_sales_repair"].public_token:
        services.template_publish_form(
            actor=admin, template_id=templates["after_sales_repair"].pk, enabled=True
        )
    queues = {}
    for name, region, members in (
        ("华东售后", "华东", ("chenjing", "liuyang")),
        ("华南售后", "华南", ("zhoujie",)),
        ("西南售后", "西南", ("maqian",)),
        ("客诉专线", None, ("gaoyan", "wangfang", "lina", "guoxin")),
        ("VIP 服务", None, ("gaoyan", "wangfang")),
    ):
        queue = Queue.objects.filter(tenant_id=tenant_id, name=name).first()
        if queue is None:
            queue = services.queue_save(
                actor=admin,
                name=name,
                region_id=regions[region].pk if region else None,
                member_ids=_people(tenant_id, *members),
            )
        queues[name] = queue
    rules: list[tuple[str, dict[str, Any], str, dict[str, Any] | None, str]] = [
        (
            "VIP 客户交专属顾问",
            {"field": "customer_level", "op": "eq", "value": "vip"},
            "VIP 服务",
            {"rule": "customer_owner", "fallback": "least_loaded"},
            "A",
        ),
        (
            "S 级投诉",
            {
                "all": [
                    {"field": "template", "op": "eq", "value": "complaint"},
                    {"field": "priority", "op": "eq", "value": "S"},
                ]
            },
            "客诉专线",
            {"rule": "least_loaded"},
            "S",
        ),
        (
            "华东售后",
            {
                "all": [
                    {"field": "region", "op": "within", "value": regions["华东"].pk},
                    {"field": "category", "op": "eq", "value": "售后"},
                ]
            },
            "华东售后",
            {"rule": "least_loaded"},
            "",
        ),
        (
            "华南售后",
            {
                "all": [
                    {"field": "region", "op": "within", "value": regions["华南"].pk},
                    {"field": "category", "op": "eq", "value": "售后"},
                ]
            },
            "华南售后",
            {"rule": "round_robin"},
            "",
        ),
        ("其他投诉", {"field": "template", "op": "eq", "value": "complaint"}, "客诉专线", None, ""),
    ]
    for position, (name, conditions, queue_name, assignment, priority) in enumerate(rules, 1):
        if not RoutingRule.objects.filter(tenant_id=tenant_id, name=name).exists():
            services.rule_save(
                actor=admin,
                name=name,
                conditions=conditions,
                queue_id=queues[str(queue_name)].pk,
                assignment=assignment,
                priority=priority,
                position=position * 10,
            )
    if not Mailbox.objects.filter(address=DEMO_MAILBOX).exists():
        services.mailbox_save(
            actor=admin, address=DEMO_MAILBOX, template_id=templates["after_sales_repair"].pk
        )
    _demo_tickets(tenant_id, regions)


def _demo_tickets(tenant_id: int, regions: dict[str, Region]) -> None:
    agent = actor_for(Employee.objects.get(tenant_id=tenant_id, user__username="wangfang"))
    path = [regions["华东"].pk, regions["上海"].pk, regions["浦东"].pk]
    samples: list[tuple[str, str, dict[str, Any]]] = [
        (
            "after_sales_repair",
            "浦东",
            {
                "contact_name": "张丽华",
                "contact_phone": "13601852266",
                "service_type": "售后服务",
                "fault": "空调外机异响，制冷效果差",
                "fault_tags": ["噪音大"],
                "warranty": "不确定",
                "service_region": path,
                "service_address": "上海市浦东新区世纪大道 100 号",
            },
        ),
        (
            "complaint",
            "广州",
            {
                "urgency": "A",
                "target": "服务人员",
                "staff_name": "吴昊",
                "description": "上门工程师迟到两个小时且未提前告知",
                "expectation": "道歉",
                "contact_phone": "13916620318",
            },
        ),
    ]
    for key, region, answers in samples:
        # Each sample is its own transaction, as a person would make it; `source_key` keeps a
        # second load from making it again.
        services.ticket_create(
            actor=agent,
            new=services.NewTicket(
                template_key=key,
                answers=answers,
                source=Source.CONSOLE,
                source_key=f"demo:{key}",
                region_id=regions[region].pk,
            ),
        )
