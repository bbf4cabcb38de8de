"""Behaviour events from outside (page views, chats, orders, …): ingest, the timeline, retention.

An event names its customer by id or by identities; identities go through identity resolution
(`resolve_in_transaction`), so an unknown phone creates the customer exactly as registering it
would, and a merged customer's id lands on the customer it was merged into.

Idempotency: the sender's `event_id` is unique per tenant. Sending the same event again returns
the stored one and changes nothing (no double count in any rule); the same id with a different
payload is refused (409 naming event_id), as is an id already used for a customer the sender may
not edit (nothing about that customer is shown). Two identical events sent at once: the unique
constraint lets one in, and the other reads it back as a duplicate.

After an event is stored, the auto-tag rules are evaluated for its customer in the same
transaction. A batch stores each item in its own savepoint, so a bad item is reported (with the
path of the wrong field) while the others are stored; the rules then run once per customer the
batch touched, on all of its new events together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, DomainError, Invalid, NotFound
from jingwei.org.scope import Actor

from ..identities import IdentityInput, identity_key
from ..models import (
    Customer,
    CustomerEvent,
    CustomerSettings,
    EventKind,
    Identity,
    IdentityStatus,
)
from .common import EDIT, MANAGE, lock_customers, survivor_id
from .resolution import resolve_in_transaction
from .tag_rules import enabled_rules, rules_apply_to_customer
from .tagging import readable_customer

BATCH_MAX = 500
DATA_MAX_BYTES = 8 * 1024  # an event's `data`, as UTF-8 JSON: details, not documents
DATA_MAX_DEPTH = 8
EVENT_ID_MAX = 100
RESERVED_PREFIX = "jw:"  # ids of the events the product writes itself (event_record)
FUTURE_TOLERANCE = timedelta(minutes=10)  # clocks of senders run a little fast
INGEST_KINDS = tuple(k for k in EventKind.values if k != EventKind.SYSTEM)
RETENTION_MIN_DAYS = 30
RETENTION_MAX_DAYS = 36500
PURGE_CHUNK = 5000


@dataclass(frozen=True)
class EventInput:
    """One event as a sender states it. Exactly one of `customer_id` and `identities` says whose;
    `customer_name` names a customer the identities create."""

    event_id: str
    kind: str
    occurred_at: datetime
    channel: str = ""
    title: str = ""
    amount: Decimal | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    customer_id: int | None = None
    identities: Sequence[IdentityInput] = ()
    customer_name: str = ""


@dataclass
class IngestResult:
    status: str  # created | duplicate | error
    event: CustomerEvent | None = None
    error: DomainError | None = None


# --- checking --------------------------------------------------------------------------------


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > DATA_MAX_DEPTH:
        raise Invalid(
            f"data 嵌套过深（最多 {DATA_MAX_DEPTH} 层）", code="data_too_deep", field="data"
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise Invalid("data 不能包含 NUL 字符", code="string_nul", field="data")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise Invalid("data 的键应为文本", code="invalid", field="data")
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif not (value is None or isinstance(value, bool | int | float)):
        raise Invalid("data 应为 JSON 对象", code="invalid", field="data")


def _check(event: EventInput, now: datetime, retention_days: int) -> None:
    if not event.event_id or len(event.event_id) > EVENT_ID_MAX:
        raise Invalid(f"event_id 应为 1—{EVENT_ID_MAX} 个字符", code="invalid", field="event_id")
    if event.event_id.startswith(RESERVED_PREFIX):
        raise Invalid(
            f"以 {RESERVED_PREFIX} 开头的 event_id 留给系统自己记录的事件",
            code="reserved_event_id",
            field="event_id",
        )
    if event.kind not in INGEST_KINDS:
        raise Invalid(f"不支持的事件类型：{event.kind}", code="invalid", field="kind")
    if timezone.is_naive(event.occurred_at):
        raise Invalid("发生时间应带时区", code="timezone_aware", field="occurred_at")
    if event.occurred_at > now + FUTURE_TOLERANCE:
        raise Invalid("发生时间不能晚于当前时间", code="in_future", field="occurred_at")
    if retention_days and event.occurred_at < now - timedelta(days=retention_days):
        raise Invalid(
            f"发生时间早于行为事件的保留期限（{retention_days} 天），不会被保存",
            code="event_expired",
            field="occurred_at",
        )
    if len(event.channel) > 50 or "\x00" in event.channel:
        raise Invalid("渠道应为不超过 50 字的文本", code="invalid", field="channel")
    if len(event.title) > 200 or "\x00" in event.title:
        raise Invalid("摘要应为不超过 200 字的文本", code="invalid", field="title")
    amount = event.amount
    if amount is not None and (
        not amount.is_finite()
        or amount != amount.quantize(Decimal("0.01"))
        or abs(amount) >= Decimal(10) ** 12
    ):
        raise Invalid("金额应为最多 12 位整数、2 位小数的数字", code="invalid", field="amount")
    if not isinstance(event.data, Mapping):
        raise Invalid("data 应为 JSON 对象", code="invalid", field="data")
    _check_json(event.data)
    if len(json.dumps(event.data, ensure_ascii=False).encode()) > DATA_MAX_BYTES:
        raise Invalid(
            f"data 过大（上限 {DATA_MAX_BYTES // 1024} KB）", code="data_too_large", field="data"
        )
    if (event.customer_id is None) == (not event.identities):
        raise Invalid(
            "请用 customer_id 或 identities 说明是哪位客户（二选一）",
            code="customer_required",
            field="customer_id",
        )


# --- storing ---------------------------------------------------------------------------------


def _customer_for_event(actor: Actor, customer_id: int) -> Customer:
    """The active customer `customer_id` lives in (itself unless merged), locked, if the actor may
    edit it; otherwise 404 like a missing id."""
    target = survivor_id(actor.tenant_id, customer_id)
    if target is None or not Customer.objects.visible_to(actor, EDIT).filter(pk=target).exists():
        raise NotFound("客户不存在", field="customer_id")
    customer = lock_customers([target])[target]
    if customer.merged_into_id is not None:
        raise Conflict("客户刚被合并，请重试", code="customer_merged", field="customer_id")
    return customer


def _stored(tenant_id: int, event_id: str) -> CustomerEvent | None:
    return CustomerEvent.objects.filter(tenant_id=tenant_id, event_id=event_id).first()


def _differences(stored: CustomerEvent, event: EventInput, customer_id: int | None) -> list[str]:
    """The fields in which `event` differs from the stored event of the same id."""
    stated = {
        "kind": event.kind,
        "channel": event.channel,
        "title": event.title,
        "occurred_at": event.occurred_at,
        "amount": event.amount,
        "data": dict(event.data),
    }
    # JSON through the database and back: the stored data as the sender's would read.
    stated["data"] = json.loads(json.dumps(stated["data"]))
    differ = [name for name, value in stated.items() if getattr(stored, name) != value]
    owner = survivor_id(stored.tenant_id, stored.customer_id)
    if customer_id is not None:
        if customer_id != owner:
            differ.append("customer_id")
    else:
        for index, identity in enumerate(event.identities):
            key = identity_key(identity.kind, identity.value, identity.namespace)
            holder = (
                Identity.objects.filter(
                    tenant_id=stored.tenant_id,
                    kind=key.kind,
                    namespace=key.namespace,
                    value=key.value,
                    status=IdentityStatus.ACTIVE,
                )
                .values_list("customer_id", flat=True)
                .first()
            )
            if holder is not None and survivor_id(stored.tenant_id, holder) != owner:
                differ.append(f"identities.{index}")
    return differ


def _duplicate(
    actor: Actor, stored: CustomerEvent, event: EventInput, customer_id: int | None
) -> CustomerEvent:
    owner = survivor_id(actor.tenant_id, stored.customer_id)
    if not Customer.objects.visible_to(actor, EDIT).filter(pk=owner).exists():
        # Someone else's event: say only that the id is taken.
        raise Conflict(
            "该 event_id 已被另一条事件使用，请换一个", code="event_id_conflict", field="event_id"
        )
    differ = _differences(stored, event, customer_id)
    if differ:
        raise Conflict(
            f"该 event_id 已用于一条内容不同的事件（不同之处：{'、'.join(differ)}）；"
            "重发请保持内容一致，新事件请换一个 event_id",
            code="event_id_conflict",
            field="event_id",
        )
    return stored


def _ingest_one(
    actor: Actor, event: EventInput, now: datetime, retention_days: int
) -> tuple[CustomerEvent, bool]:
    """Store one event in the caller's transaction: (event, True) if new, (stored, False) for a
    repeat."""
    _check(event, now, retention_days)
    tenant_id = actor.tenant_id
    if event.customer_id is not None:
        customer = _customer_for_event(actor, event.customer_id)
        stored = _stored(tenant_id, event.event_id)
        if stored is not None:
            return _duplicate(actor, stored, event, customer.pk), False
    else:
        # A repeat is recognised before resolving, so it registers nobody a second time.
        stored = _stored(tenant_id, event.event_id)
        if stored is not None:
            return _duplicate(actor, stored, event, None), False
        customer = resolve_in_transaction(
            actor=actor,
            identities=event.identities,
            profile={"name": event.customer_name} if event.customer_name else None,
            source=f"event:{event.channel}"[:50] if event.channel else "event",
        ).customer
    try:
        with transaction.atomic():
            created = CustomerEvent.objects.create(
                tenant_id=tenant_id,
                customer=customer,
                event_id=event.event_id,
                kind=event.kind,
                channel=event.channel,
                title=event.title,
                amount=event.amount,
                data=dict(event.data),
                occurred_at=event.occurred_at,
            )
    except IntegrityError:
        # The same id stored meanwhile by a concurrent request (which has committed now).
        stored = _stored(tenant_id, event.event_id)
        if stored is None:
            raise
        return _duplicate(actor, stored, event, customer.pk), False
    return created, True


def _retention_days(tenant_id: int) -> int:
    row = CustomerSettings.objects.filter(tenant_id=tenant_id).first()
    return row.event_retention_days if row is not None else _default_retention()


def _default_retention() -> int:
    default = CustomerSettings._meta.get_field("event_retention_days").default
    return int(default)


def event_ingest(
    *, actor: Actor, event: EventInput, now: datetime | None = None
) -> tuple[CustomerEvent, bool]:
    """Store one behaviour event and re-evaluate the auto-tag rules for its customer. Returns the
    event and whether it is new (False: the same event was sent before; nothing changed)."""
    actor.require(EDIT)
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        stored, created = _ingest_one(actor, event, now, _retention_days(actor.tenant_id))
        if created:
            rules_apply_to_customer(
                tenant_id=actor.tenant_id, customer_id=stored.customer_id, now=now
            )
        return stored, created


def events_ingest_batch(
    *, actor: Actor, events: Sequence[EventInput], now: datetime | None = None
) -> list[IngestResult]:
    """Store up to BATCH_MAX events, each on its own (one refused does not stop the others), then
    re-evaluate the rules once for each customer that got new events. Results in input order;
    an error's `field` is relative to its item."""
    actor.require(EDIT)
    if len(events) > BATCH_MAX:
        raise Invalid(f"一次最多 {BATCH_MAX} 条事件", code="too_many", field="items")
    with transaction.atomic(durable=True):
        return ingest_in_transaction(actor=actor, events=events, now=now)


def ingest_in_transaction(
    *, actor: Actor, events: Sequence[EventInput], now: datetime | None = None
) -> list[IngestResult]:
    """`events_ingest_batch` inside the caller's transaction (the demo loader's, an import's)."""
    actor.require(EDIT)
    now = now or timezone.now()
    retention = _retention_days(actor.tenant_id)
    results: list[IngestResult] = []
    touched: set[int] = set()
    for event in events:
        try:
            with transaction.atomic():
                stored, created = _ingest_one(actor, event, now, retention)
        except DomainError as exc:
            results.append(IngestResult("error", error=exc))
            continue
        results.append(IngestResult("created" if created else "duplicate", stored))
        if created:
            touched.add(stored.customer_id)
    rules = enabled_rules(actor.tenant_id)
    for customer_id in sorted(touched):
        rules_apply_to_customer(
            tenant_id=actor.tenant_id, customer_id=customer_id, now=now, rules=rules
        )
    return results


# --- the timeline ----------------------------------------------------------------------------


def _merged_family(customer: Customer) -> list[int]:
    """The customer and every customer merged into it, directly or through others."""
    family, frontier = [customer.pk], [customer.pk]
    for _ in range(100):
        frontier = list(
            Customer.objects.filter(
                tenant_id=customer.tenant_id, merged_into_id__in=frontier
            ).values_list("pk", flat=True)
        )
        if not frontier:
            break
        family += frontier
    return family


def timeline_list(
    *,
    actor: Actor,
    customer_id: int,
    kind: str | None = None,
    channel: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[CustomerEvent]:
    """A customer's timeline, newest first: its events and those of customers merged into it
    (`since` inclusive, `until` exclusive)."""
    customer = readable_customer(actor, customer_id)
    events = CustomerEvent.objects.filter(
        tenant_id=actor.tenant_id, customer_id__in=_merged_family(customer)
    )
    if kind:
        events = events.filter(kind=kind)
    if channel:
        events = events.filter(channel=channel)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    return events.order_by("-occurred_at", "-id")


# --- settings and retention ------------------------------------------------------------------


def customer_settings_get(*, actor: Actor) -> CustomerSettings:
    """The tenant's customer settings (the defaults, unsaved, until someone changes them)."""
    actor.require(MANAGE)
    row = CustomerSettings.objects.filter(tenant_id=actor.tenant_id).first()
    return row if row is not None else CustomerSettings(tenant_id=actor.tenant_id)


def customer_settings_update(*, actor: Actor, event_retention_days: int) -> CustomerSettings:
    """Set how long behaviour events are kept: 0 for ever, otherwise at least RETENTION_MIN_DAYS
    (so a slip of the keyboard cannot wipe the history the rules and segments read)."""
    actor.require_tenant_wide(MANAGE)
    days = event_retention_days
    if days != 0 and not RETENTION_MIN_DAYS <= days <= RETENTION_MAX_DAYS:
        raise Invalid(
            f"保留天数应为 0（永久保留）或 {RETENTION_MIN_DAYS}—{RETENTION_MAX_DAYS} 天",
            code="invalid_retention",
            field="event_retention_days",
        )
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                row, _ = CustomerSettings.objects.get_or_create(tenant_id=actor.tenant_id)
        except IntegrityError:  # created concurrently
            row = CustomerSettings.objects.get(tenant_id=actor.tenant_id)
        row = CustomerSettings.objects.select_for_update().get(pk=row.pk)
        before = row.event_retention_days
        if before != days:
            row.event_retention_days = days
            row.save(update_fields=["event_retention_days"])
            audit_record(
                actor=actor,
                tenant_id=actor.tenant_id,
                action="customers.settings.updated",
                subject=row,
                before={"event_retention_days": before},
                after={"event_retention_days": days},
            )
        return row


def events_purge_expired(*, tenant_id: int, now: datetime | None = None) -> int:
    """Delete the tenant's timeline events older than its retention (nothing when it keeps them
    for ever), PURGE_CHUNK at a time, each chunk its own transaction so the daily job never holds
    a long lock. Returns how many were deleted."""
    days = _retention_days(tenant_id)
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = CustomerEvent.objects.filter(tenant_id=tenant_id, occurred_at__lt=cutoff)
    deleted = 0
    while True:
        ids = list(expired.order_by().values_list("pk", flat=True)[:PURGE_CHUNK])
        if not ids:
            break
        with transaction.atomic(durable=True):
            count, _ = expired.filter(pk__in=ids).delete()
        deleted += count
    if deleted:
        with transaction.atomic(durable=True):
            audit_record(
                actor=None,
                tenant_id=tenant_id,
                action="customers.events.purged",
                data={"deleted": deleted, "before": cutoff.isoformat(), "retention_days": days},
            )
    return deleted
