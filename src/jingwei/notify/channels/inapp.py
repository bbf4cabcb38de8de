"""The in-app inbox as a channel: the runner writes the inbox row and the sent mark together."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Channel, Message, Sent

LINK_KEYS = frozenset({"id", "number", "business_key", "step"})


def links(payload: dict[str, Any]) -> dict[str, Any]:
    """What the inbox keeps of an event: the ids and numbers a console links to (ticket, instance),
    not the rest — the customer's contact stays out of colleagues' inboxes."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "customer":
            continue
        if isinstance(value, dict):
            kept = {k: v for k, v in value.items() if k in LINK_KEYS or k.endswith("_id")}
            if kept:
                out[key] = kept
        elif key in LINK_KEYS or key.endswith("_id") or key.endswith("_ids"):
            out[key] = value
    return out


class InApp(Channel):
    name = "inapp"
    label = "站内通知"
    address_kind = "id"
    transactional: ClassVar[bool] = True

    def send(self, message: Message, settings: Any) -> Sent:
        from ..models import Notification

        delivery = settings  # the runner passes the delivery row itself
        row = Notification.objects.create(
            tenant_id=message.tenant_id,
            recipient_id=int(message.address),
            kind=message.event,
            severity=message.severity,
            title=message.title,
            body=message.text,
            data={
                **links(message.payload),
                "delivery": message.delivery_uid,
                "rule": delivery.rule_id,
            },
        )
        return Sent(provider_id=str(row.pk))
