"""The notifications engine's operations. `inbox` is the in-app inbox every module writes to;
`event_publish` is how a module tells the rules engine something happened."""

from .events import event_publish, events_fan_out
from .inbox import inbox, inbox_mark_all_read, notification_mark_read, notification_send

__all__ = [
    "event_publish",
    "events_fan_out",
    "inbox",
    "inbox_mark_all_read",
    "notification_mark_read",
    "notification_send",
]
