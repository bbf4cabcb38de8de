"""Where the engine reaches people: reminders and alerts. The notifications module routes these
through its rules and channels; until then they land in the in-app inbox."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jingwei.notify.services import notification_send


def alert(
    *,
    tenant_id: int,
    recipient_ids: Iterable[int | None],
    kind: str,
    title: str,
    body: str = "",
    severity: str = "warning",
    data: dict[str, Any] | None = None,
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
