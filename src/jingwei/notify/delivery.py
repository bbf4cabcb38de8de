"""The delivery runner: claims due deliveries, sends each through its channel, records the result.

Exactly once per event, rule, recipient and channel, as far as a sender can promise it:

1. The delivery row is unique (`notify_delivery_once`), so fanning an event out again adds none.
2. A send is recorded *before* (claim: status `sending`, attempts + 1, a lease) and *after* (sent,
   or back to pending with backoff, or dead) in transactions of their own; the outside call
   happens between them. The record-after is fenced on the attempt number, so a worker whose
   lease ran out cannot overwrite the result of the one that took over.
3. The in-app channel writes the inbox row and the `sent` mark in one transaction: exactly once.
4. A worker that dies after the outside call but before recording it leaves the lease to expire;
   the next worker sends again with the same delivery uid. That window is at-least-once: the
   webhook receiver dedupes on X-Jingwei-Delivery, WeCom on its duplicate check, e-mail carries
   the same Message-ID; an SMS gateway or DingTalk robot that accepted the first may show the
   message twice (docs/notify.md says so).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from .channels import CHANNELS, DeliveryError, Message
from .models import ChannelConfig, Delivery, DeliveryStatus

log = logging.getLogger("jingwei.notify")


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, 4 min … capped at an hour."""
    base = settings.NOTIFY_RETRY_BASE_SECONDS
    return timedelta(seconds=min(3600, base * 2 ** max(0, attempts - 1)))


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.NOTIFY_LEASE_SECONDS)


def claim(limit: int, now: datetime | None = None) -> list[Delivery]:
    """Take up to `limit` due deliveries for this worker: first those whose sender's lease ran out
    (rare), then pending ones by due time. Two queries, each walking the (status, not_before)
    index: one query OR-ing both sorted every due row (280 ms at a 600k backlog, measured)."""
    now = now or timezone.now()
    lease = _lease(now)
    skip_locked = connection.features.has_select_for_update_skip_locked
    with transaction.atomic():
        expired = Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_until__lt=now)
        pending = Delivery.objects.filter(
            status=DeliveryStatus.PENDING, not_before__lte=now
        ).order_by("not_before", "id")
        if skip_locked:
            expired = expired.select_for_update(skip_locked=True)
            pending = pending.select_for_update(skip_locked=True)
        ids = list(expired.order_by("lease_until", "id").values_list("pk", flat=True)[:limit])
        if len(ids) < limit:
            ids += list(pending.values_list("pk", flat=True)[: limit - len(ids)])
        if not ids:
            return []
        # Guarded like the timers: on SQLite (no row locks) only rows still due are taken.
        due = Q(status=DeliveryStatus.PENDING, not_before__lte=now) | Q(
            status=DeliveryStatus.SENDING, lease_until__lt=now
        )
        Delivery.objects.filter(due, pk__in=ids).update(
            status=DeliveryStatus.SENDING, lease_until=lease, attempts=F("attempts") + 1
        )
        return list(
            Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENDING, lease_until=lease)
            .select_related("event")
            .order_by("not_before", "id")
        )


def message_for(delivery: Delivery) -> Message:
    extra = delivery.extra or {}
    return Message(
        delivery_uid=str(delivery.uid),
        tenant_id=delivery.tenant_id,
        event=delivery.event.name,
        severity=delivery.severity,
        title=delivery.title,
        text=delivery.text,
        html=delivery.html,
        address=delivery.address,
        recipient_name=delivery.recipient_name,
        mention_mobiles=tuple(extra.get("mention_mobiles") or ()),
        sms_template_code=extra.get("sms_template_code") or "",
        sms_params=dict(extra.get("sms_params") or {}),
        payload={k: v for k, v in delivery.event.payload.items() if not k.startswith("_")},
    )


def _mine(delivery: Delivery) -> Any:
    return Delivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts
    )


def _failed(delivery: Delivery, error: str, *, retryable: bool, now: datetime) -> None:
    last = delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS
    dead = last or not retryable
    _mine(delivery).update(
        status=DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING,
        not_before=delivery.not_before if dead else now + backoff(delivery.attempts),
        lease_until=None,
        last_error=error[:2000],
    )


def _settings_for(delivery: Delivery, cache: dict[tuple[int, str], Any]) -> Any:
    key = (delivery.tenant_id, delivery.channel)
    if key not in cache:
        adapter = CHANNELS[delivery.channel]
        row = ChannelConfig.objects.filter(
            tenant_id=delivery.tenant_id, channel=delivery.channel, enabled=True
        ).first()
        cache[key] = None if row is None else adapter.settings_model.model_validate(row.settings)
    return cache[key]


def deliver(delivery: Delivery, cache: dict[tuple[int, str], Any] | None = None) -> str:
    """Send one claimed delivery and record how it went. Returns the new status."""
    cache = {} if cache is None else cache
    adapter = CHANNELS.get(delivery.channel)
    now = timezone.now()
    if adapter is None:
        _failed(delivery, f"未知渠道 {delivery.channel}", retryable=False, now=now)
        return DeliveryStatus.DEAD
    message = message_for(delivery)
    if getattr(adapter, "transactional", False):
        # In-app: the inbox row and the sent mark commit together — exactly once.
        with transaction.atomic():
            if not _mine(delivery).select_for_update().exists():
                return DeliveryStatus.SENDING  # someone else owns it now
            sent = adapter.send(message, delivery)
            _mine(delivery).update(
                status=DeliveryStatus.SENT,
                sent_at=now,
                lease_until=None,
                provider_id=sent.provider_id,
                last_error="",
            )
        return DeliveryStatus.SENT
    # A batch is sent one delivery after another; renewing the lease just before each outside
    # call keeps a slow batch (timeouts) from outliving it and being sent again by another
    # worker. None renewed: another worker took this one over.
    if not _mine(delivery).update(lease_until=_lease(timezone.now())):
        return DeliveryStatus.SENDING
    try:
        config = _settings_for(delivery, cache)
        if config is None:
            raise DeliveryError("渠道未配置或已停用", retryable=False)
        sent = adapter.send(message, config)
    except DeliveryError as exc:
        _failed(delivery, str(exc), retryable=exc.retryable, now=timezone.now())
        return DeliveryStatus.DEAD if not exc.retryable else DeliveryStatus.PENDING
    except Exception as exc:  # a bug or an outage we did not foresee: retry, and keep the trace
        log.exception("delivery %s on %s failed", delivery.pk, delivery.channel)
        _failed(delivery, f"{type(exc).__name__}: {exc}", retryable=True, now=timezone.now())
        return DeliveryStatus.PENDING
    _mine(delivery).update(
        status=DeliveryStatus.SENT,
        sent_at=timezone.now(),
        lease_until=None,
        provider_id=sent.provider_id[:200],
        last_error="",
    )
    return DeliveryStatus.SENT


def deliver_due(limit: int | None = None, now: datetime | None = None) -> int:
    """Fan out new events, then send what is due. Returns how many deliveries were attempted.
    Registered with the timer loop, so `jingwei run` and `jingwei timers` deliver."""
    from .services.events import events_fan_out

    limit = int(limit or settings.NOTIFY_BATCH)
    events_fan_out(limit)
    cache: dict[tuple[int, str], Any] = {}
    batch = claim(limit, now)
    for delivery in batch:
        deliver(delivery, cache)
    return len(batch)
