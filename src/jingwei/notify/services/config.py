"""A tenant's notification set-up: quiet hours, channel credentials, each person's preferences
and the duty rosters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from typing import Any

import pydantic
from django.db import transaction
from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import Invalid, NotFound
from jingwei.org.models import Employee, Region
from jingwei.org.scope import Actor

from ..channels import CHANNELS, channel_named
from ..models import ChannelConfig, NotifySettings, Preference, Roster, Shift
from .rules import MANAGE

MASK = "******"


def tenant_settings(tenant_id: int) -> NotifySettings:
    found = NotifySettings.objects.filter(tenant_id=tenant_id).first()
    return found or NotifySettings(tenant_id=tenant_id)


def settings_save(
    *, actor: Actor, quiet_start: time, quiet_end: time, quiet_enabled: bool
) -> NotifySettings:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        row, _ = NotifySettings.objects.select_for_update().get_or_create(tenant_id=actor.tenant_id)
        row.quiet_start, row.quiet_end, row.quiet_enabled = quiet_start, quiet_end, quiet_enabled
        row.save()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.settings.saved",
            after={
                "quiet_start": str(quiet_start),
                "quiet_end": str(quiet_end),
                "on": quiet_enabled,
            },
        )
        return row


def masked_settings(config: ChannelConfig) -> dict[str, Any]:
    secret = channel_named(config.channel).secret_fields
    return {k: (MASK if k in secret and v else v) for k, v in config.settings.items()}


def channel_config_save(
    *, actor: Actor, channel: str, settings: Mapping[str, Any], enabled: bool = True
) -> ChannelConfig:
    """Save a channel's settings, checked against the channel's own model. A secret sent back
    masked (as the API shows it) keeps the stored value, so editing the URL does not wipe the key."""
    actor.require_tenant_wide(MANAGE)
    if channel not in CHANNELS or channel == "inapp":
        raise NotFound("没有这个渠道", field="channel")
    adapter = CHANNELS[channel]
    with transaction.atomic(durable=True):
        row, _ = ChannelConfig.objects.select_for_update().get_or_create(
            tenant_id=actor.tenant_id, channel=channel
        )
        merged = dict(settings)
        for name in adapter.secret_fields:
            if merged.get(name) == MASK:
                merged[name] = row.settings.get(name, "")
        try:
            checked = adapter.settings_model.model_validate(merged)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise Invalid(
                f"渠道参数有误：{where}：{first['msg']}", code="invalid", field=f"settings.{where}"
            ) from None
        row.settings, row.enabled = checked.model_dump(mode="json"), enabled
        row.save()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.channel.saved",
            subject=row,
            after={"channel": channel, "enabled": enabled, "settings": masked_settings(row)},
        )
        return row


def preference_get(tenant_id: int, employee_id: int) -> Preference:
    found = Preference.objects.filter(tenant_id=tenant_id, employee_id=employee_id).first()
    return found or Preference(tenant_id=tenant_id, employee_id=employee_id)


ADDRESS_KINDS = ("email", "phone", "wecom_userid")


def preference_save(
    *,
    actor: Actor,
    muted_channels: list[str],
    quiet_start: time | None,
    quiet_end: time | None,
    addresses: Mapping[str, str],
    employee_id: int | None = None,
) -> Preference:
    """A person sets their own; notify.manage sets anyone's in the tenant."""
    target = actor.employee_id if employee_id is None else employee_id
    if target != actor.employee_id:
        actor.require_tenant_wide(MANAGE)
    unknown = [c for c in muted_channels if c not in CHANNELS]
    if unknown:
        raise Invalid(f"未知渠道：{'、'.join(unknown)}", code="invalid", field="muted_channels")
    if "inapp" in muted_channels:
        raise Invalid("站内通知不能屏蔽", code="invalid", field="muted_channels")
    if (quiet_start is None) != (quiet_end is None):
        raise Invalid("免打扰开始和结束需同时填写", code="invalid", field="quiet_end")
    bad = [k for k in addresses if k not in ADDRESS_KINDS]
    if bad:
        raise Invalid(
            f"地址类型应为 {'、'.join(ADDRESS_KINDS)}", code="invalid", field=f"addresses.{bad[0]}"
        )
    with transaction.atomic(durable=True):
        if not Employee.objects.filter(tenant_id=actor.tenant_id, pk=target).exists():
            raise NotFound("员工不存在", field="employee_id")
        row, _ = Preference.objects.select_for_update().get_or_create(
            tenant_id=actor.tenant_id, employee_id=target
        )
        row.muted_channels = sorted(set(muted_channels))
        row.quiet_start, row.quiet_end = quiet_start, quiet_end
        row.addresses = {k: str(v).strip() for k, v in addresses.items() if str(v).strip()}
        row.save()
        return row


# --- duty rosters ------------------------------------------------------------------------------


def roster_save(
    *,
    actor: Actor,
    name: str,
    region_id: int | None = None,
    fallback_id: int | None = None,
    roster_id: int | None = None,
) -> Roster:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        if (
            region_id is not None
            and not Region.objects.filter(tenant_id=actor.tenant_id, pk=region_id).exists()
        ):
            raise Invalid("区域不存在", code="invalid_reference", field="region_id")
        if (
            fallback_id is not None
            and not Employee.objects.filter(tenant_id=actor.tenant_id, pk=fallback_id).exists()
        ):
            raise Invalid("员工不存在", code="invalid_reference", field="fallback_id")
        if roster_id is None:
            roster = Roster(tenant_id=actor.tenant_id)
        else:
            found = Roster.objects.filter(tenant_id=actor.tenant_id, pk=roster_id).first()
            if found is None:
                raise NotFound("值班表不存在", field="roster_id")
            roster = found
        roster.name, roster.region_id, roster.fallback_id = name, region_id, fallback_id
        roster.save()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.roster.saved",
            subject=roster,
            after={"name": name, "region": region_id, "fallback": fallback_id},
        )
        return roster


def roster_get(tenant_id: int, roster_id: int) -> Roster:
    roster = Roster.objects.filter(tenant_id=tenant_id, pk=roster_id).first()
    if roster is None:
        raise NotFound("值班表不存在", field="roster_id")
    return roster


def shifts_add(
    *, actor: Actor, roster_id: int, shifts: list[tuple[int, datetime, datetime]]
) -> list[Shift]:
    """Add shifts (employee, start, end). A person cannot hold two overlapping shifts of one
    roster; different people may overlap (two on duty at once)."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        roster = roster_get(actor.tenant_id, roster_id)
        Roster.objects.select_for_update().filter(pk=roster.pk).first()
        people = {e for e, _, _ in shifts}
        known = set(
            Employee.objects.filter(tenant_id=actor.tenant_id, pk__in=people).values_list(
                "pk", flat=True
            )
        )
        rows: list[Shift] = []
        for i, (employee_id, starts_at, ends_at) in enumerate(shifts):
            if employee_id not in known:
                raise Invalid(
                    "员工不存在", code="invalid_reference", field=f"shifts[{i}].employee_id"
                )
            if timezone.is_naive(starts_at) or timezone.is_naive(ends_at):
                raise Invalid("时间需带时区", code="invalid", field=f"shifts[{i}].starts_at")
            if ends_at <= starts_at:
                raise Invalid(
                    "结束时间应晚于开始时间", code="invalid", field=f"shifts[{i}].ends_at"
                )
            clash = Shift.objects.filter(
                roster=roster, employee_id=employee_id, starts_at__lt=ends_at, ends_at__gt=starts_at
            ).exists() or any(
                r.employee_id == employee_id and r.starts_at < ends_at and r.ends_at > starts_at
                for r in rows
            )
            if clash:
                raise Invalid(
                    "该员工在这段时间已有班次", code="shift_overlap", field=f"shifts[{i}].starts_at"
                )
            rows.append(
                Shift(
                    tenant_id=actor.tenant_id,
                    roster=roster,
                    employee_id=employee_id,
                    starts_at=starts_at,
                    ends_at=ends_at,
                )
            )
        created = Shift.objects.bulk_create(rows)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.roster.shifts_added",
            subject=roster,
            data={"shifts": len(created)},
        )
        return created


def shift_delete(*, actor: Actor, roster_id: int, shift_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        roster = roster_get(actor.tenant_id, roster_id)
        deleted, _ = Shift.objects.filter(roster=roster, pk=shift_id).delete()
        if not deleted:
            raise NotFound("班次不存在", field="shift_id")
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="notify.roster.shift_deleted",
            subject=roster,
            data={"shift": shift_id},
        )


def on_duty(roster: Roster, at: datetime | None = None) -> list[int]:
    """Who is on duty at `at` (now): the holders of the shifts covering it, else the fallback."""
    at = at or timezone.now()
    people = sorted(
        set(
            Shift.objects.filter(roster=roster, starts_at__lte=at, ends_at__gt=at).values_list(
                "employee_id", flat=True
            )
        )
    )
    if not people and roster.fallback_id is not None:
        people = [roster.fallback_id]
    return people


def on_duty_named(tenant_id: int, roster_name: str, at: datetime | None = None) -> list[int]:
    """Who is on duty in the tenant's roster called `roster_name` (an escalation step's
    `duty:<值班表>` target); nobody when there is no such roster."""
    roster = Roster.objects.filter(tenant_id=tenant_id, name=roster_name).first()
    return on_duty(roster, at) if roster is not None else []
