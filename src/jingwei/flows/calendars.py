"""Business calendars kept as data, per tenant and per region, and the lookup the SLAs use.

`calendar.py` is the pure arithmetic (no database); this module stores `BusinessCalendar`s as
`WorkCalendar` rows and picks the one that applies to a case:

1. the calendar of the case's region, else of the nearest ancestor region that has one
   (浦东 → 上海 → 华东: the region's materialised path lists them);
2. else the tenant's default calendar (the row without a region);
3. else the built-in `default_calendar()` (Mon–Fri 09:00–12:00, 13:00–18:00, China's public
   holidays), in the region's time zone, or the tenant's, when that is not Asia/Shanghai.

`calendar_for` reads at most one query per lookup, and keeps what it found in a small
per-process cache keyed by (tenant, region). Saving or deleting a `WorkCalendar` (or a region
or tenant, whose path and time zone the lookup uses) in this process clears the cache at once
and again when the transaction commits; a change made by another process (another web worker,
the timer loop) is seen within `CACHE_SECONDS` (60 s), when the entry expires. Changes by
`QuerySet.update()` send no signal and are also only seen on expiry.

The services (list, get, create-or-replace, delete) back `/api/flows/calendars`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import replace
from functools import lru_cache
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import Case, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.signals import post_delete, post_save

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, DomainError, NotFound
from jingwei.org.models import Region, Tenant
from jingwei.org.scope import Actor

from .calendar import DEFAULT_TIMEZONE, BusinessCalendar, CalendarError, default_calendar
from .models import WorkCalendar
from .services import MANAGE, VIEW

__all__ = [
    "CACHE_SECONDS",
    "calendar_delete",
    "calendar_for",
    "calendar_get",
    "calendar_put",
    "calendars_list",
    "clear_cache",
]

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
_CACHE_SIZE = 4096  # (tenant, region) pairs; past this the cache starts over

_cache: dict[tuple[int, int | None], tuple[float, BusinessCalendar]] = {}
_lock = threading.Lock()
_generation = 0  # bumped by every clear, so a lookup that raced a clear does not store old data


# --- lookup ------------------------------------------------------------------------------------


def calendar_for(tenant_id: int, region: Region | None) -> BusinessCalendar:
    """The business calendar of a case of `tenant_id` in `region` (None: no region); see the
    module docstring for the order. At most one query; none when cached."""
    key = (tenant_id, region.pk if region is not None else None)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        generation = _generation
    if hit is not None and hit[0] > now:
        return hit[1]
    found = _load(tenant_id, region)
    with _lock:
        if generation == _generation:
            if len(_cache) >= _CACHE_SIZE:
                _cache.clear()
            _cache[key] = (now + CACHE_SECONDS, found)
    return found


def clear_cache() -> None:
    """Forget every cached lookup of this process."""
    global _generation
    with _lock:
        _cache.clear()
        _generation += 1


def _path_ids(region: Region) -> list[int]:
    """The region and its ancestors, nearest first."""
    ids = [int(part) for part in region.path.strip("/").split("/") if part]
    if not ids or ids[-1] != region.pk:
        ids.append(region.pk)
    return ids[::-1]


def _load(tenant_id: int, region: Region | None) -> BusinessCalendar:
    ids = _path_ids(region) if region is not None else []
    candidates = WorkCalendar.objects.filter(tenant_id=OuterRef("pk")).filter(
        Q(region__isnull=True) | Q(region_id__in=ids) if ids else Q(region__isnull=True)
    )
    if ids:  # nearest region first, the tenant default (no region) last
        nearest = Case(
            *(When(region_id=pk, then=Value(rank)) for rank, pk in enumerate(ids)),
            default=Value(len(ids)),
            output_field=IntegerField(),
        )
        candidates = candidates.order_by(nearest)
    # One query: the tenant's time zone, with the best stored calendar (if any) beside it.
    row = (
        Tenant.objects.filter(pk=tenant_id)
        .annotate(spec=Subquery(candidates.values("spec")[:1], output_field=models.JSONField()))
        .values_list("timezone", "spec")
        .first()
    )
    tenant_zone, spec = row if row is not None else (DEFAULT_TIMEZONE, None)
    if spec is not None:  # a row's spec is never SQL NULL
        try:
            return BusinessCalendar.from_dict(spec)
        except CalendarError as exc:  # stored before a rule tightened, or edited by hand
            log.warning(
                "stored work calendar of tenant %s, region %s is invalid (%s); using the built-in",
                tenant_id,
                region.pk if region is not None else None,
                exc,
            )
    zones = (region.timezone if region is not None else None, tenant_zone)
    zone = next((z for z in zones if z and z != DEFAULT_TIMEZONE), DEFAULT_TIMEZONE)
    return _builtin(zone)


@lru_cache(maxsize=64)
def _builtin(zone: str) -> BusinessCalendar:
    """The built-in calendar, in `zone` (an unknown zone name: Asia/Shanghai's)."""
    if zone == DEFAULT_TIMEZONE:
        return default_calendar()
    try:
        return replace(default_calendar(), timezone=zone)
    except CalendarError:
        log.warning("unknown time zone %r; using %s", zone, DEFAULT_TIMEZONE)
        return default_calendar()


def _changed(**kwargs: Any) -> None:
    clear_cache()
    # Readers in other threads may have cached the old rows before this commits.
    transaction.on_commit(clear_cache, robust=True)


for _model in (WorkCalendar, Region, Tenant):
    for _signal in (post_save, post_delete):
        _signal.connect(_changed, sender=_model, dispatch_uid=f"flows.calendars.{_model.__name__}")


# --- services ----------------------------------------------------------------------------------


def calendars_list(*, actor: Actor) -> QuerySet[WorkCalendar]:
    """The tenant's calendars: its default first, then by region path (configuration, so any
    holder of flow.view sees all of them)."""
    actor.require(VIEW)
    return (
        WorkCalendar.objects.visible_to(actor, VIEW)
        .select_related("region")
        .order_by(models.F("region__path").asc(nulls_first=True), "id")
    )


def calendar_get(*, actor: Actor, calendar_id: int, lock: bool = False) -> WorkCalendar:
    actor.require(VIEW)
    qs = WorkCalendar.objects.visible_to(actor, VIEW).filter(pk=calendar_id)
    found = (qs.select_for_update() if lock else qs).first()
    if found is None:
        raise NotFound("工作日历不存在", field="id")
    return found


def _api_field(field: str | None) -> str | None:
    """CalendarError's `hours.mon[1][0]` in the API's dotted form: `hours.mon.1.0`."""
    return re.sub(r"\[(\d+)\]", r".\1", field) if field else field


def calendar_put(
    *, actor: Actor, name: str, region_id: int | None, spec: dict[str, Any]
) -> WorkCalendar:
    """Create or replace the tenant's default calendar (`region_id` None) or a region's. `spec` is
    the JSON form `BusinessCalendar.from_dict` takes; without a time zone, the region's (or the
    tenant's) is used. A bad part is a 422 naming it."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        region = None
        if region_id is not None:
            region = Region.objects.filter(tenant_id=actor.tenant_id, pk=region_id).first()
            if region is None:
                raise DomainError("区域不存在", code="invalid_reference", field="region_id")
        if not spec.get("timezone"):
            zone = (
                region.timezone
                if region is not None
                else Tenant.objects.values_list("timezone", flat=True).get(pk=actor.tenant_id)
            )
            spec = {**spec, "timezone": zone}
        try:
            calendar = BusinessCalendar.from_dict(spec)
        except CalendarError as exc:
            raise CalendarError(exc.message, code=exc.code, field=_api_field(exc.field)) from None
        if not calendar.weekly_working_time:
            # Working-time SLAs would never fall due (the engine refuses to search for ever).
            raise CalendarError("hours: 每周至少要有一段工作时间", field="hours")
        stored = calendar.to_dict()
        row = (
            WorkCalendar.objects.select_for_update()
            .filter(tenant_id=actor.tenant_id, region=region)
            .first()
        )
        before = None
        if row is None:
            try:
                with transaction.atomic():
                    row = WorkCalendar.objects.create(
                        tenant_id=actor.tenant_id, region=region, name=name, spec=stored
                    )
            except IntegrityError:  # created by someone else since the read above
                raise Conflict(
                    "该区域的工作日历刚被他人创建，请刷新后重试",
                    code="calendar_exists",
                    field="region_id",
                ) from None
            action = "flows.calendar.created"
        else:
            before = {"name": row.name, "spec": row.spec}
            row.name = name
            row.spec = stored
            row.save(update_fields=["name", "spec", "updated_at"])
            action = "flows.calendar.replaced"
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=action,
            subject=row,
            before=before,
            after={"name": name, "region_id": region_id, "spec": stored},
        )
        return row


def calendar_delete(*, actor: Actor, calendar_id: int) -> None:
    """Remove a calendar: its cases fall back to the parent region's, the tenant default or the
    built-in one."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        calendar = calendar_get(actor=actor, calendar_id=calendar_id, lock=True)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="flows.calendar.deleted",
            subject=calendar,
            before={"name": calendar.name, "region_id": calendar.region_id, "spec": calendar.spec},
        )
        calendar.delete()
