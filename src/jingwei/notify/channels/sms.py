"""SMS through Aliyun (阿里云短信服务) SendSms, API version 2017-05-25, RPC style.

The request is a form POST of the common RPC parameters plus SendSms's own, signed as Aliyun's
"签名机制" describes: sort the parameters, percent-encode names and values by RFC 3986 (so a space
is %20, `*` is %2A and `~` stays), join them into the canonical query, then
StringToSign = "POST&%2F&" + percentEncode(canonical query), and
Signature = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign)).

Aliyun does not deduplicate on OutId (it only echoes it in delivery receipts): a resend after a
worker died between the call and recording it sends a second text. That window is small and a
duplicate SMS is preferable to a lost one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field

from . import http
from .base import Channel, ChannelSettings, DeliveryError, Message, Sent

API_VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"


class SmsSettings(ChannelSettings):
    access_key_id: str = Field(min_length=1)
    access_key_secret: str = Field(min_length=1)
    sign_name: str = Field(min_length=1, description="短信签名，如【经纬服务】里的“经纬服务”")
    template_code: str = Field(
        "", description="消息模板未指定短信模板时用的模板号，如 SMS_123456789"
    )
    region_id: str = "cn-hangzhou"
    endpoint: str = Field(DEFAULT_ENDPOINT, pattern=r"^https?://")
    timeout_seconds: float = Field(10.0, gt=0, le=60)


def percent_encode(value: str) -> str:
    """RFC 3986 as Aliyun uses it: only A-Z a-z 0-9 - _ . ~ stay, everything else is %XY of
    its UTF-8 bytes (space → %20, not +; * → %2A; ~ is not encoded)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def signature(method: str, params: Mapping[str, str], secret: str) -> str:
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode("utf-8"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Codes after which the same request can succeed later (rate limits, Aliyun's own failures).
# Everything else an operator has to fix first: the key, the signature name, the template, the
# number, the balance.
RETRYABLE_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",  # per-number flow control (minute/hour/day)
        "isv.DAY_LIMIT_CONTROL",
        "isp.SYSTEM_ERROR",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "Throttling.Resource",
        "ServiceUnavailable",
        "InternalError",
        "SignatureNonceUsed",  # the next attempt has a new nonce
    }
)

_MESSAGES = {
    "SignatureDoesNotMatch": "签名校验失败，请检查 AccessKeySecret",
    "InvalidAccessKeyId.NotFound": "AccessKeyId 不存在",
    "InvalidAccessKeyId.Inactive": "AccessKeyId 已停用",
    "isv.MOBILE_NUMBER_ILLEGAL": "手机号码格式不正确",
    "isv.BUSINESS_LIMIT_CONTROL": "触发短信流控",
    "isv.SMS_SIGNATURE_ILLEGAL": "短信签名不可用",
    "isv.SMS_TEMPLATE_ILLEGAL": "短信模板不可用",
    "isv.TEMPLATE_MISSING_PARAMETERS": "短信模板缺少参数",
    "isv.AMOUNT_NOT_ENOUGH": "短信账户余额不足",
}

_PHONE_JUNK = re.compile(r"[\s\-()]")


class SmsChannel(Channel):
    name = "sms"
    label = "短信（阿里云）"
    per_recipient = True
    address_kind = "phone"
    settings_model = SmsSettings
    secret_fields: ClassVar[tuple[str, ...]] = ("access_key_secret",)

    def params(
        self, message: Message, s: SmsSettings, *, now: datetime | None = None
    ) -> dict[str, str]:
        phone = _PHONE_JUNK.sub("", message.address)
        if not phone:
            raise DeliveryError("收件人没有手机号码", retryable=False)
        template = message.sms_template_code or s.template_code
        if not template:
            raise DeliveryError("没有短信模板号（消息模板和渠道设置都未指定）", retryable=False)
        return {
            "Action": "SendSms",
            "Version": API_VERSION,
            "Format": "JSON",
            "RegionId": s.region_id,
            "AccessKeyId": s.access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": uuid.uuid4().hex,
            "Timestamp": timestamp(now),
            "PhoneNumbers": phone,
            "SignName": s.sign_name,
            "TemplateCode": template,
            "TemplateParam": json.dumps(
                {k: str(v) for k, v in message.sms_params.items()},
                ensure_ascii=False,
                separators=(",", ":"),
            ),
            "OutId": message.delivery_uid,
        }

    def send(self, message: Message, settings: Any) -> Sent:
        s = settings if isinstance(settings, SmsSettings) else SmsSettings.model_validate(settings)
        params = self.params(message, s)
        body = (
            canonical_query(params)
            + "&Signature="
            + percent_encode(signature("POST", params, s.access_key_secret))
        )
        try:
            resp = http.post_form(s.endpoint, body, timeout=s.timeout_seconds)
        except http.TransportError as exc:
            raise DeliveryError(f"短信接口无响应：{exc}") from exc
        data = resp.json()
        if not isinstance(data, dict) or "Code" not in data:
            raise DeliveryError(
                f"短信接口返回了无法识别的内容（HTTP {resp.status}）：{resp.text(120)}",
                retryable=resp.status >= 500 or resp.status == 429,
            )
        code = str(data["Code"])
        if code == "OK":
            return Sent(provider_id=str(data.get("BizId", "")))
        retryable = code in RETRYABLE_CODES or code.startswith("isp.") or resp.status >= 500
        hint = _MESSAGES.get(code, "")
        detail = str(data.get("Message", ""))[:200]
        raise DeliveryError(
            f"短信发送失败：{code}{'（' + hint + '）' if hint else ''} {detail}".strip(),
            retryable=retryable,
        )


sms = SmsChannel()
