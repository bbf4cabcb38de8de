"""Where the engine reaches people: reminders and alerts. Each lands in the named people's
in-app inbox at once (so an escalation reaches someone even where no rule is set up) and is
published to the notification rules as event `<kind>` (e.g. flows.sla_alert), where a tenant adds
SMS, WeCom or a DingTalk group, or the on-duty person."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jingwei.notify.services import event_publish, notification_send


def alert(
    *,
    tenant_id: int,
    recipient_ids: Iterable[int | None],
    kind: str,
    title: str,
    body: str = "",
    severity: str = "warning",
    data: dict[str, Any] | None = None,
    region_id: int | None = None,
) -> None:
    people = [pk for pk in recipient_ids if pk is not None]
    if people:
        notification_send(
            tenant_id=tenant_id,
            recipient_ids=people,
            kind=kind,
            title=title,
            body=body,
            severity=severity,
            data=data,
        )
    # The caller's transaction (a timer firing, a transition) makes this once: a rollback takes
    # the event with it, so no key is needed.
    event_publish(
        tenant_id=tenant_id,
        name=kind,
        severity=severity,
        payload={
            **(data or {}),
            "title": title,
            "body": body,
            "recipient_ids": people,
            "region_id": region_id,
        },
    )
