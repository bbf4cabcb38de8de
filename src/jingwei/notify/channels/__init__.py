"""Delivery channels by name. Each is a `Channel` (see `base`); the runner looks them up here."""

from __future__ import annotations

from .base import Channel, ChannelSettings, DeliveryError, Message, Sent

CHANNELS: dict[str, Channel] = {}


def register(channel: Channel) -> Channel:
    CHANNELS[channel.name] = channel
    return channel


def channel_named(name: str) -> Channel:
    try:
        return CHANNELS[name]
    except KeyError:
        raise LookupError(f"unknown channel {name!r}") from None


__all__ = ["CHANNELS", "Channel", "ChannelSettings", "DeliveryError", "Message", "Sent", "register"]

from .inapp import InApp  # noqa: E402  (the registry above must exist first)

register(InApp())

# The outbound channels (jingwei.notify.channels.<name>); each module builds its one instance.
from .dingtalk import dingtalk as _dingtalk  # noqa: E402
from .email import email as _email  # noqa: E402
from .sms import sms as _sms  # noqa: E402
from .webhook import webhook as _webhook  # noqa: E402
from .wecom import wecom as _wecom  # noqa: E402

for _channel in (_email, _sms, _wecom, _dingtalk, _webhook):
    register(_channel)
