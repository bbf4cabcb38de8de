"""Message templates and notification rules: administrator data, validated when saved so a bad
rule is refused with the field named instead of failing silently at 3 a.m."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction

from jingwei.audit.services import audit_record, delete_recorded, snapshot
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.flows.expressions import check as expression_error
from jingwei.org.models import Employee
from jingwei.org.scope import Actor

from ..channels import CHANNELS
from ..models import MessageTemplate, Roster, Rule, Severity
from ..rendering import template_error

MANAGE = "notify.manage"

RECIPIENT_KINDS = {
    "employee": "指定员工",
    "role": "区域内的角色",
    "duty": "值班人",
    "field": "事件中的员工",
    "manager_of": "事件中员工的上级",
    "customer": "客户本人",
}


def template_save(
    *, actor: Actor, data: Mapping[str, Any], template_id: int | None = None
) -> MessageTemplate:
    actor.require_tenant_wide(MANAGE)
    for name in ("title", "text", "html"):
        error = template_error(str(data.get(name) or ""))
        if error:
            raise Invalid(error, code="invalid_template", field=name)
    params = data.get("sms_params") or {}
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        raise Invalid("短信参数应为 参数名 → 模板文本", code="invalid", field="sms_params")
    for name, source in params.items():
        error = template_error(source)
        if error:
            raise Invalid(error, code="invalid_template", field=f"sms_params.{name}")
    with transaction.atomic(durable=True):
        if template_id is None:
            template = MessageTemplate(tenant_id=actor.tenant_id)
            before = None
        else:
            found = (
                MessageTemplate.objects.select_for_update()
                .filter(tenant_id=actor.tenant_id, pk=template_id)
                .first()
            )
            if found is None:
                raise NotFound("消息模板不存在", field="template_id")
            template, before = found, snapshot(found)
        for name in ("key", "name", "title", "text", "html", "sms_template_code"):
            if name in data:
                setattr(template, name, data[name] or "")
        template.sms_params = params
        try:
            with transaction.atomic():
                template.save()
        except IntegrityError:
            raise Conflict("模板标识已存在", code="key_taken", field="key") from None
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.template.saved",
            subject=template,
            before=before,
            after=snapshot(template),
        )
        return template


def check_recipients(tenant_id: int, recipients: Any) -> list[dict[str, Any]]:
    if not isinstance(recipients, list) or not recipients:
        raise Invalid("至少需要一个接收人", code="invalid", field="recipients")
    checked = []
    for i, spec in enumerate(recipients):
        where = f"recipients[{i}]"
        if not isinstance(spec, dict) or spec.get("kind") not in RECIPIENT_KINDS:
            kinds = "、".join(RECIPIENT_KINDS)
            raise Invalid(f"接收人类型应为 {kinds} 之一", code="invalid", field=f"{where}.kind")
        kind = spec["kind"]
        if kind == "employee":
            pk = spec.get("employee_id")
            if (
                not isinstance(pk, int)
                or not Employee.objects.filter(tenant_id=tenant_id, pk=pk).exists()
            ):
                raise Invalid("员工不存在", code="invalid_reference", field=f"{where}.employee_id")
            checked.append({"kind": kind, "employee_id": pk})
        elif kind == "role":
            role, scope = spec.get("role"), spec.get("scope", "region")
            if not isinstance(role, str) or not role.strip():
                raise Invalid("请填写角色名称", code="required", field=f"{where}.role")
            if scope not in ("region", "department", "tenant"):
                raise Invalid(
                    "范围应为 region、department 或 tenant", code="invalid", field=f"{where}.scope"
                )
            checked.append({"kind": kind, "role": role.strip(), "scope": scope})
        elif kind == "duty":
            pk = spec.get("roster_id")
            if (
                not isinstance(pk, int)
                or not Roster.objects.filter(tenant_id=tenant_id, pk=pk).exists()
            ):
                raise Invalid("值班表不存在", code="invalid_reference", field=f"{where}.roster_id")
            checked.append({"kind": kind, "roster_id": pk})
        elif kind in ("field", "manager_of"):
            name = spec.get("field")
            if not isinstance(name, str) or not name.strip():
                raise Invalid(
                    "请填写事件中员工编号所在的字段", code="required", field=f"{where}.field"
                )
            checked.append({"kind": kind, "field": name.strip()})
        else:
            checked.append({"kind": kind})
    return checked


def check_channels(channels: Any) -> dict[str, list[str]]:
    if not isinstance(channels, dict) or not channels:
        raise Invalid("请为至少一个级别选择渠道", code="invalid", field="channels")
    checked: dict[str, list[str]] = {}
    for severity, names in channels.items():
        if severity not in Severity.values:
            raise Invalid(
                "级别应为 info、warning 或 urgent", code="invalid", field=f"channels.{severity}"
            )
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise Invalid("渠道应为名称列表", code="invalid", field=f"channels.{severity}")
        unknown = [n for n in names if n not in CHANNELS]
        if unknown:
            raise Invalid(
                f"未知渠道：{'、'.join(unknown)}（可用：{'、'.join(sorted(CHANNELS))}）",
                code="invalid",
                field=f"channels.{severity}",
            )
        checked[severity] = list(dict.fromkeys(names))
    return checked


def rule_save(*, actor: Actor, data: Mapping[str, Any], rule_id: int | None = None) -> Rule:
    """Create or replace a rule. Company-wide notify.manage."""
    actor.require_tenant_wide(MANAGE)
    event = str(data.get("event") or "").strip()
    if not event:
        raise Invalid("请填写事件名称", code="required", field="event")
    condition = str(data.get("condition") or "").strip()
    if condition:
        error = expression_error(condition)
        if error:
            raise Invalid(error, code="invalid_expression", field="condition")
    severity = data.get("severity") or ""
    if severity and severity not in Severity.values:
        raise Invalid("级别应为 info、warning 或 urgent", code="invalid", field="severity")
    channels = check_channels(data.get("channels"))
    with transaction.atomic(durable=True):
        if rule_id is None:
            rule, before = Rule(tenant_id=actor.tenant_id), None
        else:
            found = (
                Rule.objects.select_for_update()
                .filter(tenant_id=actor.tenant_id, pk=rule_id)
                .first()
            )
            if found is None:
                raise NotFound("通知规则不存在", field="rule_id")
            rule, before = found, snapshot(found)
        recipients = check_recipients(actor.tenant_id, data.get("recipients"))
        template_id = data.get("template_id")
        template = (
            MessageTemplate.objects.filter(tenant_id=actor.tenant_id, pk=template_id).first()
            if isinstance(template_id, int)
            else None
        )
        if template is None:
            raise Invalid("消息模板不存在", code="invalid_reference", field="template_id")
        rule.name = str(data.get("name") or event)
        rule.event, rule.condition, rule.severity = event, condition, severity
        rule.recipients, rule.channels, rule.template = recipients, channels, template
        rule.delay_minutes = int(data.get("delay_minutes") or 0)
        rule.position = int(data.get("position") or rule.position or 0)
        rule.enabled = bool(data.get("enabled", True))
        rule.save()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.rule.saved",
            subject=rule,
            before=before,
            after=snapshot(rule),
        )
        return rule


def rule_delete(*, actor: Actor, rule_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        delete_recorded(
            actor=actor,
            queryset=Rule.objects,
            pk=rule_id,
            action="notify.rule.deleted",
            missing="通知规则不存在",
            field="rule_id",
        )


def template_delete(*, actor: Actor, template_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        template = MessageTemplate.objects.filter(tenant_id=actor.tenant_id, pk=template_id).first()
        if template is None:
            raise NotFound("消息模板不存在", field="template_id")
        if Rule.objects.filter(template=template).exists():
            raise Conflict("模板仍被通知规则使用", code="in_use", field="template_id")
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.template.deleted",
            subject=template,
            before=snapshot(template),
        )
        template.delete()
