"""Generic webhook: a signed JSON POST to the tenant's URL, once per recipient.

Headers:
  X-Jingwei-Delivery   the delivery's uid, the same on every attempt: the receiver's dedupe key
  X-Jingwei-Timestamp  Unix seconds when this attempt was signed
  X-Jingwei-Signature  "sha256=" + hex(HMAC-SHA256(secret, f"{timestamp}.{raw body}"))

The timestamp is inside the signed text so a receiver can refuse old requests replayed at it.
2xx is delivered; 429, 5xx and no answer are tried again; any other status is not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

from pydantic import Field

from . import http
from .base import Channel, ChannelSettings, DeliveryError, Message, Sent

SIGNATURE_HEADER = "X-Jingwei-Signature"
TIMESTAMP_HEADER = "X-Jingwei-Timestamp"
DELIVERY_HEADER = "X-Jingwei-Delivery"


class WebhookSettings(ChannelSettings):
    url: str = Field(pattern=r"^https?://", max_length=2000)
    secret: str = Field(min_length=16, description="签名密钥（至少 16 个字符）")
    timeout_seconds: float = Field(10.0, gt=0, le=60)


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """For receivers (and our simulator): constant-time comparison of the signature header."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


class WebhookChannel(Channel):
    name = "webhook"
    label = "Webhook"
    per_recipient = True
    address_kind = ""
    settings_model = WebhookSettings
    secret_fields: ClassVar[tuple[str, ...]] = ("secret",)

    def body(self, message: Message) -> bytes:
        doc = {
            "delivery": message.delivery_uid,
            "event": message.event,
            "severity": message.severity,
            "title": message.title,
            "text": message.text,
            "recipient": message.recipient_name,
            "address": message.address,
            "payload": message.payload,
        }
        # default=str: an event payload may carry dates or decimals; the receiver gets text.
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode()

    def send(self, message: Message, settings: Any) -> Sent:
        s = (
            settings
            if isinstance(settings, WebhookSettings)
            else WebhookSettings.model_validate(settings)
        )
        body = self.body(message)
        ts = str(int(time.time()))
        headers = {
            DELIVERY_HEADER: message.delivery_uid,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: signature(s.secret, ts, body),
        }
        try:
            resp = http.post_bytes(
                s.url,
                body,
                content_type="application/json; charset=utf-8",
                headers=headers,
                timeout=s.timeout_seconds,
            )
        except http.TransportError as exc:
            raise DeliveryError(f"Webhook 无响应：{exc}") from exc
        if resp.ok:
            return Sent(provider_id=resp.headers.get("x-request-id", "")[:200])
        retryable = resp.status == 429 or resp.status >= 500
        raise DeliveryError(
            f"Webhook 返回 HTTP {resp.status}：{resp.text(200)}".strip(), retryable=retryable
        )


webhook = WebhookChannel()
