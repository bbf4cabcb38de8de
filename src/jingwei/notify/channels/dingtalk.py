"""DingTalk (钉钉) custom group robot: POST https://oapi.dingtalk.com/robot/send?access_token=…
&timestamp=…&sign=… with a markdown message.

The robot's "加签" security setting: timestamp is Unix milliseconds, and
sign = urlencode(Base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))). DingTalk
refuses a timestamp more than an hour from its clock, so the sign is made per attempt.

One message per event and rule goes to the group; the recipients are @-mentioned by mobile,
which in a markdown message only shows when the text itself contains "@<mobile>".

DingTalk keeps no dedupe key for robots: a resend after a worker died between the call and
recording it posts the message twice to the group.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, field_validator

from . import http
from .base import Channel, ChannelSettings, DeliveryError, Message, Sent

DEFAULT_ROBOT_URL = "https://oapi.dingtalk.com/robot/send"

# 130101: over 20 messages a minute (robot throttled); 410100: the newer code for the same;
# -1: system busy.
RETRYABLE = frozenset({-1, 130101, 410100})

_MESSAGES = {
    310000: "安全设置校验未通过（加签密钥、时间戳、关键词或 IP 白名单）",
    300001: "access_token 不存在",
    400101: "access_token 不存在",
    400102: "机器人已停用",
    400106: "机器人不存在",
    400013: "群已解散",
    130101: "发送太快被限流（每分钟最多 20 条）",
    410100: "发送太快被限流",
}


class DingTalkSettings(ChannelSettings):
    access_token: str = Field(min_length=1, description="机器人 Webhook 地址里的 access_token")
    secret: str = Field("", description="加签密钥（SEC 开头）；机器人用关键词或 IP 白名单时留空")
    robot_url: str = Field(DEFAULT_ROBOT_URL, pattern=r"^https?://")
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("access_token", mode="before")
    @classmethod
    def _token_from_webhook(cls, value: Any) -> Any:
        # Administrators copy the whole Webhook address from DingTalk; keep only the token.
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            tokens = parse_qs(urlsplit(value).query).get("access_token")
            if not tokens:
                raise ValueError("Webhook 地址里没有 access_token")
            return tokens[0]
        return value


def sign(timestamp_ms: int | str, secret: str) -> str:
    """The Base64 signature, before URL encoding (the query string encoding adds that)."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_url(s: DingTalkSettings, *, now_ms: int | None = None) -> str:
    params = {"access_token": s.access_token}
    if s.secret:
        ts = str(now_ms if now_ms is not None else int(time.time() * 1000))
        params |= {"timestamp": ts, "sign": sign(ts, s.secret)}
    return http.with_query(s.robot_url, params)


class DingTalkChannel(Channel):
    name = "dingtalk"
    label = "钉钉群机器人"
    per_recipient = False
    address_kind = ""
    settings_model = DingTalkSettings
    secret_fields: ClassVar[tuple[str, ...]] = ("access_token", "secret")

    def body(self, message: Message) -> dict[str, Any]:
        text = (
            f"#### {message.title}\n\n{message.text}" if message.text else f"#### {message.title}"
        )
        mobiles = [m for m in message.mention_mobiles if m]
        if mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        return {
            "msgtype": "markdown",
            "markdown": {"title": message.title, "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }

    def send(self, message: Message, settings: Any) -> Sent:
        s = (
            settings
            if isinstance(settings, DingTalkSettings)
            else DingTalkSettings.model_validate(settings)
        )
        try:
            resp = http.post_json(signed_url(s), self.body(message), timeout=s.timeout_seconds)
        except http.TransportError as exc:
            raise DeliveryError(f"钉钉接口无响应：{exc}") from exc
        data = resp.json()
        if not isinstance(data, dict) or "errcode" not in data:
            raise DeliveryError(
                f"钉钉接口返回了无法识别的内容（HTTP {resp.status}）：{resp.text(120)}",
                retryable=resp.status >= 500 or resp.status == 429,
            )
        errcode = int(data["errcode"])
        if errcode != 0:
            hint = _MESSAGES.get(errcode, "")
            errmsg = str(data.get("errmsg", ""))[:200]
            raise DeliveryError(
                f"钉钉消息发送失败：errcode {errcode}{'（' + hint + '）' if hint else ''} {errmsg}".strip(),
                retryable=errcode in RETRYABLE,
            )
        return Sent(provider_id="")


dingtalk = DingTalkChannel()
