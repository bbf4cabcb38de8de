"""The one interface every delivery channel implements.

A channel turns a rendered `Message` into one outside call (or, for the in-app inbox, one row)
and says how it went: `Sent` with the provider's id, or `DeliveryError` saying whether another
attempt could help. Channels know nothing of rules, recipients or retries; the delivery runner
(`notify.delivery`) owns those. Settings are per tenant and per channel (`ChannelConfig.settings`),
checked against the channel's pydantic model when an administrator saves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Message:
    # Stable across attempts of one delivery: the receiver's dedupe key (webhook header, SMS
    # OutId, mail Message-ID, WeCom duplicate check).
    delivery_uid: str
    tenant_id: int
    event: str
    severity: str  # info | warning | urgent
    title: str
    text: str
    html: str = ""
    # Where it goes: an e-mail address, a mobile number, a WeCom userid; "" for group channels.
    address: str = ""
    recipient_name: str = ""
    # Group channels (DingTalk robot) @-mention these mobiles.
    mention_mobiles: tuple[str, ...] = ()
    # SMS providers send pre-approved templates filled with named parameters.
    sms_template_code: str = ""
    sms_params: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    provider_id: str = ""


class DeliveryError(Exception):
    """The channel could not deliver. `retryable` is False when another attempt cannot help
    (bad credentials, an invalid number, a refused signature): the delivery goes to the dead
    letters at once instead of burning its retries."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ChannelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Channel:
    name: ClassVar[str]
    label: ClassVar[str]  # Chinese, for the console
    # True: one delivery per recipient. False: one per event and rule, to a group (a DingTalk
    # robot posts once to its group and @-mentions every recipient).
    per_recipient: ClassVar[bool] = True
    # Which employee attribute is the address: "email", "phone", "wecom_userid", "id" (in-app)
    # or "" (group channels need none).
    address_kind: ClassVar[str] = ""
    settings_model: ClassVar[type[ChannelSettings]] = ChannelSettings
    # Fields of the settings that are secrets: never shown back by the API.
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def send(self, message: Message, settings: Any) -> Sent:
        raise NotImplementedError
