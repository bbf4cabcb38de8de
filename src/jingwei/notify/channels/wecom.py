"""WeCom (企业微信) application messages: GET /cgi-bin/gettoken, then
POST /cgi-bin/message/send?access_token=… with a "text" or "textcard" message to one userid.

The access_token lives 7200 s and gettoken is rate limited, so it is cached (Django's cache,
shared by all workers) until shortly before it expires. A token that WeCom no longer accepts
(expired early, secret reset) is dropped, fetched again and the message sent once more.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from django.core.cache import cache
from pydantic import Field

from . import http
from .base import Channel, ChannelSettings, DeliveryError, Message, Sent

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"

# message/send answers these when the token is the problem, not the message: refresh and resend.
TOKEN_INVALID = frozenset({40001, 40014, 41001, 42001})
# Worth another attempt later: system busy, frequency and concurrency limits.
RETRYABLE = frozenset({-1, 45009, 45033, 45011})

_MESSAGES = {
    40001: "Secret 错误或 access_token 无效",
    40013: "企业 ID（corpid）不正确",
    40056: "应用 ID（agentid）不正确",
    40091: "Secret 不正确",
    45009: "接口调用超过频率限制",
    48002: "应用没有发消息的权限",
    60020: "服务器 IP 不在企业微信的可信 IP 列表中",
    81013: "接收人 UserID 不存在或不在应用可见范围内",
    -1: "企业微信系统繁忙",
}

# WeCom's limits, in UTF-8 bytes.
TEXT_MAX = 2048
CARD_TITLE_MAX = 128
CARD_DESCRIPTION_MAX = 512


class WeComSettings(ChannelSettings):
    corp_id: str = Field(min_length=1, description="企业 ID")
    corp_secret: str = Field(min_length=1, description="自建应用的 Secret")
    agent_id: int = Field(description="自建应用的 AgentId")
    api_base: str = Field(DEFAULT_API_BASE, pattern=r"^https?://")
    # WeCom refuses more than 4 hours.
    duplicate_check_interval: int = Field(1800, ge=1, le=4 * 3600)
    timeout_seconds: float = Field(10.0, gt=0, le=60)


def clip_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary, marked with "…"."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "…"


def token_cache_key(tenant_id: int, s: WeComSettings) -> str:
    # The token belongs to one application of the corp (one Secret): a changed Secret must not
    # reuse the old application's token.
    app = hashlib.sha256(f"{s.corp_secret}\0{s.agent_id}".encode()).hexdigest()[:16]
    return f"notify:wecom:token:{tenant_id}:{s.corp_id}:{app}"


class WeComChannel(Channel):
    name = "wecom"
    label = "企业微信"
    per_recipient = True
    address_kind = "wecom_userid"
    settings_model = WeComSettings
    secret_fields: ClassVar[tuple[str, ...]] = ("corp_secret",)

    # --- the token ------------------------------------------------------------------------

    def access_token(self, tenant_id: int, s: WeComSettings, *, fresh: bool = False) -> str:
        key = token_cache_key(tenant_id, s)
        if not fresh:
            cached = cache.get(key)
            if cached:
                return str(cached)
        try:
            resp = http.get(
                http.join(s.api_base, "/cgi-bin/gettoken"),
                params={"corpid": s.corp_id, "corpsecret": s.corp_secret},
                timeout=s.timeout_seconds,
            )
        except http.TransportError as exc:
            raise DeliveryError(f"企业微信接口无响应：{exc}") from exc
        data = _answer(resp)
        errcode = int(data.get("errcode", 0))
        if errcode != 0 or not data.get("access_token"):
            raise _error("获取 access_token 失败", errcode, data)
        token = str(data["access_token"])
        expires_in = int(data.get("expires_in", 7200))
        # Renew five minutes early: a token read just before expiry must outlive the send.
        cache.set(key, token, timeout=max(expires_in - 300, 60))
        return token

    # --- the message ----------------------------------------------------------------------

    def body(self, message: Message, s: WeComSettings) -> dict[str, Any]:
        url = str(message.payload.get("url") or "")
        body: dict[str, Any] = {"touser": message.address, "agentid": s.agent_id}
        if url:
            body["msgtype"] = "textcard"
            body["textcard"] = {
                "title": clip_utf8(message.title, CARD_TITLE_MAX),
                "description": clip_utf8(message.text or message.title, CARD_DESCRIPTION_MAX),
                "url": url,
                "btntxt": "详情",
            }
        else:
            body["msgtype"] = "text"
            content = f"{message.title}\n{message.text}" if message.text else message.title
            body["text"] = {"content": clip_utf8(content, TEXT_MAX)}
        # WeCom drops a message identical (type, content, receiver) to one sent within the
        # interval and still answers ok. That is what makes our resend harmless when a worker
        # died after WeCom accepted the message but before the delivery was marked sent.
        body["enable_duplicate_check"] = 1
        body["duplicate_check_interval"] = s.duplicate_check_interval
        return body

    def send(self, message: Message, settings: Any) -> Sent:
        s = (
            settings
            if isinstance(settings, WeComSettings)
            else WeComSettings.model_validate(settings)
        )
        if not message.address:
            raise DeliveryError("收件人没有企业微信 UserID", retryable=False)
        if "|" in message.address:  # touser separates userids with "|": one address, one person
            raise DeliveryError(f"企业微信 UserID 不合法：{message.address}", retryable=False)
        body = self.body(message, s)
        data = self._post(message.tenant_id, s, body, fresh=False)
        errcode = int(data.get("errcode", 0))
        if errcode in TOKEN_INVALID:
            data = self._post(message.tenant_id, s, body, fresh=True)
            errcode = int(data.get("errcode", 0))
        if errcode != 0:
            raise _error("企业微信消息发送失败", errcode, data)
        # errcode 0 with the receiver listed as invalid: nothing reached them.
        for field in ("invaliduser", "unlicenseduser"):
            if message.address in str(data.get(field) or "").split("|"):
                raise DeliveryError(
                    f"企业微信消息未送达：UserID {message.address} 不存在、不在应用可见范围或未激活"
                    f"（{field}）",
                    retryable=False,
                )
        return Sent(provider_id=str(data.get("msgid", "")))

    def _post(
        self, tenant_id: int, s: WeComSettings, body: dict[str, Any], *, fresh: bool
    ) -> dict[str, Any]:
        token = self.access_token(tenant_id, s, fresh=fresh)
        url = http.with_query(
            http.join(s.api_base, "/cgi-bin/message/send"), {"access_token": token}
        )
        try:
            resp = http.post_json(url, body, timeout=s.timeout_seconds)
        except http.TransportError as exc:
            raise DeliveryError(f"企业微信接口无响应：{exc}") from exc
        return _answer(resp)


def _answer(resp: http.Response) -> dict[str, Any]:
    data = resp.json()
    if not isinstance(data, dict) or ("errcode" not in data and "access_token" not in data):
        raise DeliveryError(
            f"企业微信接口返回了无法识别的内容（HTTP {resp.status}）：{resp.text(120)}",
            retryable=resp.status >= 500 or resp.status == 429 or resp.ok,
        )
    return data


def _error(what: str, errcode: int, data: dict[str, Any]) -> DeliveryError:
    hint = _MESSAGES.get(errcode, "")
    errmsg = str(data.get("errmsg", ""))[:200]
    return DeliveryError(
        f"{what}：errcode {errcode}{'（' + hint + '）' if hint else ''} {errmsg}".strip(),
        retryable=errcode in RETRYABLE,
    )


wecom = WeComChannel()
