"""Events in, deliveries out: `event_publish` records what happened (in the caller's
transaction, idempotent by key); `events_fan_out` turns each new event, in one transaction of its
own, into at most one delivery per rule, recipient and channel — rendered, addressed, and timed
for quiet hours. Sending is the delivery runner's job (`notify.delivery`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils import timezone

from jingwei.core.errors import Invalid
from jingwei.flows.expressions import ExpressionError, evaluate_condition
from jingwei.org.models import Employee, EmployeeStatus, Region, Tenant
from jingwei.org.services import role_holders_covering

from ..channels import CHANNELS
from ..models import (
    ChannelConfig,
    Delivery,
    DeliveryStatus,
    Event,
    EventStatus,
    NotifySettings,
    Preference,
    Roster,
    Rule,
    Severity,
)
from ..quiet import quiet_release
from ..rendering import render
from .config import on_duty

log = logging.getLogger("jingwei.notify")


def event_publish(
    *,
    tenant_id: int,
    name: str,
    payload: Mapping[str, Any] | None = None,
    key: str = "",
    severity: str = Severity.INFO,
) -> Event:
    """Record event `name` for the rules to fan out. The same `key` twice is one event (the first):
    an integration retrying, or a timer firing again, notifies nobody twice."""
    return event_record(
        tenant_id=tenant_id, name=name, payload=payload, key=key, severity=severity
    )[0]


def event_record(
    *,
    tenant_id: int,
    name: str,
    payload: Mapping[str, Any] | None = None,
    key: str = "",
    severity: str = Severity.INFO,
) -> tuple[Event, bool]:
    """`event_publish`, also saying whether this call recorded it (False: the key was known)."""
    if severity not in Severity.values:
        raise Invalid("级别应为 info、warning 或 urgent", code="invalid", field="severity")
    if not name:
        raise Invalid("请填写事件名称", code="required", field="name")
    key = key or f"auto:{uuid.uuid4()}"
    found = Event.objects.filter(tenant_id=tenant_id, key=key).first()
    if found is not None:
        return found, False
    with transaction.atomic():
        return Event.objects.get_or_create(
            tenant_id=tenant_id,
            key=key,
            defaults={
                "name": name,
                "payload": dict(payload or {}),
                "severity": severity,
                "created_at": timezone.now(),
            },
        )


def _matching(rule_event: str, name: str) -> bool:
    # "ticket.*" matches ticket.created and ticket.sla.breached; "*" matches everything.
    if rule_event.endswith("*"):
        return name.startswith(rule_event[:-1])
    return rule_event == name


def _lookup(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _ids(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            out.append(v)
        elif isinstance(v, str) and v.isdigit():
            out.append(int(v))
    return out


@dataclass
class Person:
    key: str
    name: str
    employee_id: int | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    muted: frozenset[str] = frozenset()
    quiet: tuple[Any, Any] | None = None  # (start, end) overriding the tenant's


@dataclass
class _Context:
    """What fanning out one tenant's events needs, loaded once per batch."""

    tenant_id: int
    tz: ZoneInfo
    settings: NotifySettings | None
    configured: set[str]
    rules: list[Rule]
    people: dict[int, Person] = field(default_factory=dict)

    def employees(self, ids: Iterable[int]) -> list[Person]:
        wanted = [i for i in dict.fromkeys(ids) if i not in self.people]
        if wanted:
            rows = Employee.objects.filter(
                tenant_id=self.tenant_id, pk__in=wanted, status=EmployeeStatus.ACTIVE
            ).values("pk", "name", "email", "phone", "employee_no")
            prefs = {
                p.employee_id: p
                for p in Preference.objects.filter(tenant_id=self.tenant_id, employee_id__in=wanted)
            }
            for row in rows:
                pref = prefs.get(row["pk"])
                addresses = {
                    "id": str(row["pk"]),
                    "email": row["email"],
                    "phone": row["phone"],
                    # Companies usually make the WeCom userid the 工号; a preference overrides it.
                    "wecom_userid": row["employee_no"],
                }
                quiet = None
                if pref is not None:
                    addresses.update(pref.addresses)
                    if pref.quiet_start is not None and pref.quiet_end is not None:
                        quiet = (pref.quiet_start, pref.quiet_end)
                self.people[row["pk"]] = Person(
                    key=f"employee:{row['pk']}",
                    name=row["name"],
                    employee_id=row["pk"],
                    addresses=addresses,
                    muted=frozenset(pref.muted_channels if pref else ()),
                    quiet=quiet,
                )
        return [self.people[i] for i in dict.fromkeys(ids) if i in self.people]


def _context(tenant_id: int) -> _Context:
    tz_name = Tenant.objects.filter(pk=tenant_id).values_list("timezone", flat=True).first()
    return _Context(
        tenant_id=tenant_id,
        tz=ZoneInfo(tz_name or "Asia/Shanghai"),
        settings=NotifySettings.objects.filter(tenant_id=tenant_id).first(),
        configured=set(
            ChannelConfig.objects.filter(tenant_id=tenant_id, enabled=True).values_list(
                "channel", flat=True
            )
        )
        | {"inapp"},
        rules=list(
            Rule.objects.filter(tenant_id=tenant_id, enabled=True).select_related("template")
        ),
    )


def _region_path(tenant_id: int, payload: Mapping[str, Any], scope: str) -> str | None:
    if scope == "tenant":
        return None
    key = "department_id" if scope == "department" else "region_id"
    ids = _ids(payload.get(key))
    if not ids:
        return None
    model: Any = Region
    if scope == "department":
        from jingwei.org.models import Department

        model = Department
    return (
        model.objects.filter(tenant_id=tenant_id, pk=ids[0]).values_list("path", flat=True).first()
    )


def recipients_for(ctx: _Context, rule: Rule, event: Event) -> list[Person]:
    """The people (and the customer) a rule reaches for an event, each once."""
    payload = event.payload
    people: list[Person] = []
    for spec in rule.recipients:
        kind = spec.get("kind")
        if kind == "employee":
            people += ctx.employees([spec["employee_id"]])
        elif kind == "role":
            path = _region_path(ctx.tenant_id, payload, spec.get("scope", "region"))
            holders = role_holders_covering(
                tenant_id=ctx.tenant_id,
                role_name=spec["role"],
                path=path,
                scope="department" if spec.get("scope") == "department" else "region",
            )
            people += ctx.employees(holders)
        elif kind == "duty":
            roster = Roster.objects.filter(tenant_id=ctx.tenant_id, pk=spec["roster_id"]).first()
            if roster is not None:
                people += ctx.employees(on_duty(roster, event.created_at))
        elif kind == "field":
            people += ctx.employees(_ids(_lookup(payload, spec["field"])))
        elif kind == "manager_of":
            ids = _ids(_lookup(payload, spec["field"]))
            managers = Employee.objects.filter(
                tenant_id=ctx.tenant_id, pk__in=ids, manager__isnull=False
            ).values_list("manager_id", flat=True)
            people += ctx.employees(list(managers))
        elif kind == "customer":
            customer = payload.get("customer")
            if isinstance(customer, Mapping):
                people.append(
                    Person(
                        key="customer",
                        name=str(customer.get("name") or "客户"),
                        addresses={
                            "email": str(customer.get("email") or ""),
                            "phone": str(customer.get("phone") or ""),
                            "wecom_userid": "",
                        },
                    )
                )
    unique: dict[str, Person] = {}
    for person in people:
        unique.setdefault(person.key, person)
    return list(unique.values())


def _not_before(
    ctx: _Context, person: Person | None, at: datetime, severity: str
) -> tuple[datetime, bool]:
    if severity == Severity.URGENT:
        return at, False
    tenant = ctx.settings
    if person is not None and person.quiet is not None:
        start, end = person.quiet
    elif tenant is None:
        start, end = (
            NotifySettings._meta.get_field("quiet_start").default,
            NotifySettings._meta.get_field("quiet_end").default,
        )
    elif tenant.quiet_enabled:
        start, end = tenant.quiet_start, tenant.quiet_end
    else:
        return at, False
    release = quiet_release(at, start, end, ctx.tz)
    return (release, True) if release is not None else (at, False)


def _deliveries(ctx: _Context, rule: Rule, event: Event) -> list[Delivery]:
    severity = rule.severity or event.severity
    channels = rule.channels.get(severity, [])
    if not channels:
        return []
    context = {**event.payload, "event": event.name, "severity": severity}
    template = rule.template
    title = render(template.title, context)[:200]
    text = render(template.text, context)
    html = render(template.html, context, html=True)
    sms = {k: render(v, context) for k, v in template.sms_params.items()}
    people = recipients_for(ctx, rule, event)
    at = event.created_at + timedelta(minutes=rule.delay_minutes)
    rows = []

    def row(
        channel: str, recipient: str, person: Person | None, address: str, **extra: Any
    ) -> Delivery:
        not_before, held = _not_before(ctx, person, at, severity)
        status, error = DeliveryStatus.PENDING, ""
        if channel not in ctx.configured:
            status, error = DeliveryStatus.SKIPPED, "渠道未配置或已停用"
        elif person is not None and channel in person.muted and severity != Severity.URGENT:
            status, error = DeliveryStatus.SKIPPED, "接收人已屏蔽该渠道"
        elif CHANNELS[channel].address_kind and not address:
            status, error = DeliveryStatus.SKIPPED, "接收人没有该渠道的地址"
        return Delivery(
            tenant_id=ctx.tenant_id,
            event=event,
            rule=rule,
            recipient=recipient,
            recipient_name=person.name if person else "",
            employee_id=person.employee_id if person else None,
            channel=channel,
            address=address,
            severity=severity,
            title=title,
            text=text,
            html=html,
            extra={
                "sms_template_code": template.sms_template_code,
                "sms_params": sms,
                **extra,
            },
            status=status,
            last_error=error,
            not_before=not_before,
            held_for_quiet=held and status == DeliveryStatus.PENDING,
            created_at=event.created_at,
        )

    for channel in channels:
        adapter = CHANNELS.get(channel)
        if adapter is None:
            continue
        if adapter.per_recipient:
            for person in people:
                if person.employee_id is None and channel == "inapp":
                    continue  # a customer has no inbox here
                address = (
                    person.addresses.get(adapter.address_kind, "") if adapter.address_kind else ""
                )
                rows.append(row(channel, person.key, person, address))
        elif people:
            mobiles = sorted({p.addresses["phone"] for p in people if p.addresses.get("phone")})
            rows.append(
                row(
                    channel,
                    "group",
                    None,
                    "",
                    mention_mobiles=mobiles,
                    names=[p.name for p in people],
                )
            )
    return rows


def fan_out(event: Event, ctx: _Context | None = None) -> int:
    """Fan out one event (the caller holds it locked). Returns the deliveries written."""
    ctx = ctx or _context(event.tenant_id)
    rows: list[Delivery] = []
    errors = []
    for rule in ctx.rules:
        if not _matching(rule.event, event.name):
            continue
        if rule.condition:
            try:
                if not evaluate_condition(rule.condition, event.payload):
                    continue
            except ExpressionError as exc:
                errors.append({"rule": rule.pk, "error": str(exc)})
                continue
        rows += _deliveries(ctx, rule, event)
    # ignore_conflicts: a fan-out repeated after a crash adds nothing already there.
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    Event.objects.filter(pk=event.pk).update(
        status=EventStatus.DONE,
        processed_at=timezone.now(),
        payload={**event.payload, "_rule_errors": errors} if errors else event.payload,
    )
    return len(rows)


def events_fan_out(limit: int = 200) -> int:
    """Fan out up to `limit` new events, one transaction each. Returns how many were taken."""
    done = 0
    contexts: dict[int, _Context] = {}
    while done < limit:
        with transaction.atomic():
            pending = Event.objects.filter(status=EventStatus.NEW).order_by("created_at", "id")
            if connection.features.has_select_for_update_skip_locked:
                pending = pending.select_for_update(skip_locked=True)
            event = pending.first()
            if event is None:
                return done
            claimed = Event.objects.filter(pk=event.pk, status=EventStatus.NEW)
            if not connection.features.has_select_for_update_skip_locked and not claimed.exists():
                continue
            ctx = contexts.get(event.tenant_id) or contexts.setdefault(
                event.tenant_id, _context(event.tenant_id)
            )
            fan_out(event, ctx)
        done += 1
    return done
