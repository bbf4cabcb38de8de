"""The in-app inbox as a channel: the runner writes the inbox row and the sent mark together."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Channel, Message, Sent


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
            data={**message.payload, "delivery": message.delivery_uid, "rule": delivery.rule_id},
        )
        return Sent(provider_id=str(row.pk))
