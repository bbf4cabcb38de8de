"""Local stand-ins for the providers the notification channels call, as WSGI apps (stdlib only).

Each follows the provider's published contract as far as a sender can observe it: the same
paths, parameters, signatures, answers and error codes. They keep what they accepted in memory
for tests to inspect, and can be told to fail the next requests the way the provider fails
(rate limited, system busy, HTTP 500). `serve(app)` runs one on 127.0.0.1 in a background
thread; `simulators_app()` mounts all four under /sms/, /wecom/, /dingtalk/ and /webhook/ for
`jingwei simulators`.

They are simulations, written from the providers' documentation: passing against them says our
side follows that documentation, not that the provider agrees.

- AliyunSmsSimulator: Dysmsapi SendSms (2017-05-25), RPC style, HMAC-SHA1 signature checked with
  its own encoder (not the channel's), timestamp window, nonce replay, number format, signature
  name, template and its parameters, optional per-number flow control.
- WeComSimulator: gettoken and message/send, token expiry, invalid credentials, receivers,
  and the duplicate check (enable_duplicate_check / duplicate_check_interval).
- DingTalkSimulator: custom robot send with 加签 (timestamp within an hour, HMAC-SHA256 sign)
  and the 20-messages-a-minute limit.
- WebhookReceiver: our own webhook contract; verifies the signature and dedupes on the delivery
  id, counting duplicates. Cheap and thread-safe: the benchmark points the webhook channel at it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import socketserver
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Clock = Callable[[], float]
OnRecord = Callable[[str, Any], None]

MAX_BODY = 1024 * 1024

# Credentials the demo (`jingwei simulators`) accepts; tests make their own.
DEMO_SMS_KEY_ID = "LTAI-jingwei-demo"
DEMO_SMS_KEY_SECRET = "jingwei-demo-sms-secret"
DEMO_SMS_SIGN_NAME = "经纬服务"
DEMO_SMS_TEMPLATE = "SMS_000000001"
DEMO_WECOM_CORP_ID = "ww-jingwei-demo"
DEMO_WECOM_SECRET = "jingwei-demo-wecom-secret"
DEMO_WECOM_AGENT_ID = 1000002
DEMO_DINGTALK_TOKEN = "jingwei-demo-robot"
DEMO_DINGTALK_SECRET = "SECjingwei-demo-dingtalk-secret"
DEMO_WEBHOOK_SECRET = "jingwei-demo-webhook-secret"


# --- plumbing -------------------------------------------------------------------------------


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(min(length, MAX_BODY)) if length > 0 else b""


def _respond(
    start_response: StartResponse,
    status: int,
    doc: Any,
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    start_response(
        f"{status} {_REASONS.get(status, 'Status')}",
        [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [body]


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _path(environ: dict[str, Any]) -> str:
    return "/" + str(environ.get("PATH_INFO", "")).lstrip("/")


class _Failures:
    """Answers queued by a test to replace the next real ones."""

    def __init__(self) -> None:
        self._queue: deque[Any] = deque()

    def add(self, answer: Any, times: int) -> None:
        self._queue.extend([answer] * times)

    def take(self) -> Any | None:
        # deque.popleft is atomic; no lock needed around the hot path when the queue is empty.
        try:
            return self._queue.popleft()
        except IndexError:
            return None


class _Simulator:
    def __init__(self, *, clock: Clock | None, on_record: OnRecord | None) -> None:
        self.clock: Clock = clock or time.time
        self.on_record = on_record
        self.lock = threading.Lock()
        self.failures = _Failures()

    def _recorded(self, kind: str, record: Any) -> None:
        if self.on_record is not None:
            self.on_record(kind, record)


# --- Aliyun SMS -----------------------------------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def aliyun_percent_encode(text: str) -> str:
    """RFC 3986 percent-encoding of the UTF-8 bytes, written out byte by byte: the simulator's
    own reading of Aliyun's rules, independent of the channel's (which uses urllib)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def aliyun_rpc_signature(method: str, params: Mapping[str, str], secret: str) -> tuple[str, str]:
    """(signature, string to sign) as Aliyun's RPC 签名机制 defines them."""
    canonical = "&".join(
        aliyun_percent_encode(k) + "=" + aliyun_percent_encode(params[k])
        for k in sorted(params)
        if k != "Signature"
    )
    to_sign = method + "&" + aliyun_percent_encode("/") + "&" + aliyun_percent_encode(canonical)
    mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii"), to_sign


_DOMESTIC = re.compile(r"^(?:\+86|0086|86)?1[3-9]\d{9}$")
_INTERNATIONAL = re.compile(r"^(?:\+|00)?[1-9]\d{7,14}$")
_TEMPLATE_VARIABLE = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class SmsRecord:
    phone_numbers: tuple[str, ...]
    sign_name: str
    template_code: str
    template_param: dict[str, str]
    out_id: str
    biz_id: str
    request_id: str
    access_key_id: str
    received_at: float


class AliyunSmsSimulator(_Simulator):
    """POST (form) or GET on "/" with the RPC parameters, answered in JSON.

    `templates` maps a template code to its text ("您的工单${ticket}已超时") or to the set of its
    variable names; None accepts any template. `sign_names` None accepts any signature name.
    `per_number_per_minute` turns on the per-number flow control Aliyun applies."""

    TIMESTAMP_SKEW = 15 * 60
    NONCE_TTL = 15 * 60

    def __init__(
        self,
        access_keys: Mapping[str, str] | None = None,
        *,
        sign_names: Collection[str] | None = None,
        templates: Mapping[str, str | Collection[str]] | None = None,
        per_number_per_minute: int | None = None,
        clock: Clock | None = None,
        on_record: OnRecord | None = None,
    ) -> None:
        super().__init__(clock=clock, on_record=on_record)
        self.access_keys = dict(access_keys or {DEMO_SMS_KEY_ID: DEMO_SMS_KEY_SECRET})
        self.sign_names = set(sign_names) if sign_names is not None else None
        self.templates: dict[str, set[str]] | None = None
        if templates is not None:
            self.templates = {
                code: set(_TEMPLATE_VARIABLE.findall(t)) if isinstance(t, str) else set(t)
                for code, t in templates.items()
            }
        self.per_number_per_minute = per_number_per_minute
        self.messages: list[SmsRecord] = []
        self.requests = 0
        self._nonces: dict[str, float] = {}
        self._sent_at: dict[str, deque[float]] = {}

    def fail_next(self, code: str, *, status: int = 200, message: str = "", times: int = 1) -> None:
        """Answer the next `times` well-signed requests with this error: "isv.BUSINESS_LIMIT_CONTROL",
        or ("InternalError", status=500), …"""
        self.failures.add((status, code, message or f"simulated {code}"), times)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method not in ("GET", "POST"):
            return _respond(start_response, 405, {"Code": "UnsupportedHTTPMethod"})
        params = dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))
        if method == "POST":
            params.update(
                parse_qsl(_body(environ).decode("utf-8", "replace"), keep_blank_values=True)
            )
        request_id = str(uuid.uuid4()).upper()
        with self.lock:
            self.requests += 1
            status, doc = self._handle(params, method, request_id)
        doc["RequestId"] = request_id
        return _respond(start_response, status, doc)

    def _error(self, status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
        return status, {"Code": code, "Message": message}

    def _handle(
        self, p: dict[str, str], method: str, request_id: str
    ) -> tuple[int, dict[str, Any]]:
        for name in (
            "AccessKeyId",
            "Signature",
            "SignatureMethod",
            "SignatureNonce",
            "SignatureVersion",
            "Timestamp",
            "Action",
            "Version",
        ):
            if not p.get(name):
                return self._error(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if p["SignatureMethod"] != "HMAC-SHA1" or p["SignatureVersion"] != "1.0":
            return self._error(
                400, "InvalidParameter", "SignatureMethod/SignatureVersion not supported."
            )
        try:
            sent_at = datetime.strptime(p["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._error(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        now = self.clock()
        if abs(sent_at.timestamp() - now) > self.TIMESTAMP_SKEW:
            return self._error(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        secret = self.access_keys.get(p["AccessKeyId"])
        if secret is None:
            return self._error(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        expected, to_sign = aliyun_rpc_signature(method, p, secret)
        if not hmac.compare_digest(expected, p["Signature"]):
            return self._error(
                400,
                "SignatureDoesNotMatch",
                f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}",
            )
        self._nonces = {n: t for n, t in self._nonces.items() if now - t < self.NONCE_TTL}
        if p["SignatureNonce"] in self._nonces:
            return self._error(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )
        self._nonces[p["SignatureNonce"]] = now
        if p["Action"] != "SendSms":
            return self._error(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        if p["Version"] != "2017-05-25":
            return self._error(400, "InvalidVersion", "Specified parameter Version is not valid.")
        injected = self.failures.take()
        if injected is not None:
            return self._error(*injected)
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not p.get(name):
                return self._error(400, f"Missing{name}", f"{name} is mandatory for this action.")
        numbers = tuple(n.strip() for n in p["PhoneNumbers"].split(","))
        if len(numbers) > 1000:
            return self._error(200, "isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        for number in numbers:
            if not (
                _DOMESTIC.match(number) or (_INTERNATIONAL.match(number) and number[0] in "+0")
            ):
                return self._error(200, "isv.MOBILE_NUMBER_ILLEGAL", f"非法手机号：{number}")
        if self.sign_names is not None and p["SignName"] not in self.sign_names:
            return self._error(200, "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        try:
            template_param = json.loads(p.get("TemplateParam") or "{}")
        except ValueError:
            return self._error(200, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if not isinstance(template_param, dict) or not all(
            isinstance(v, str) for v in template_param.values()
        ):
            return self._error(200, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if self.templates is not None:
            variables = self.templates.get(p["TemplateCode"])
            if variables is None:
                return self._error(200, "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
            missing = sorted(variables - template_param.keys())
            if missing:
                return self._error(
                    200, "isv.TEMPLATE_MISSING_PARAMETERS", f"模板缺少变量：{','.join(missing)}"
                )
        if self.per_number_per_minute is not None:
            for number in numbers:
                recent = self._sent_at.setdefault(number, deque())
                while recent and now - recent[0] >= 60:
                    recent.popleft()
                if len(recent) >= self.per_number_per_minute:
                    return self._error(
                        200,
                        "isv.BUSINESS_LIMIT_CONTROL",
                        f"触发分钟级流控Permits:{self.per_number_per_minute}",
                    )
            for number in numbers:
                self._sent_at[number].append(now)
        biz_id = f"{secrets.randbelow(10**15):015d}^0"
        record = SmsRecord(
            phone_numbers=numbers,
            sign_name=p["SignName"],
            template_code=p["TemplateCode"],
            template_param=template_param,
            out_id=p.get("OutId", ""),
            biz_id=biz_id,
            request_id=request_id,
            access_key_id=p["AccessKeyId"],
            received_at=now,
        )
        self.messages.append(record)
        self._recorded("sms", record)
        return 200, {"Code": "OK", "Message": "OK", "BizId": biz_id}


# --- WeCom ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeComRecord:
    touser: tuple[str, ...]
    agentid: int
    msgtype: str
    content: dict[str, Any]
    msgid: str
    received_at: float


def _wecom_error(errcode: int, errmsg: str) -> dict[str, Any]:
    return {
        "errcode": errcode,
        "errmsg": f"{errmsg}, more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}",
    }


class WeComSimulator(_Simulator):
    """GET /cgi-bin/gettoken and POST /cgi-bin/message/send for one corp and one application.

    `users` None accepts any userid. On a duplicate (same agent, receivers, type and content
    within the interval, with enable_duplicate_check=1) it answers ok with the first message's
    msgid and does not deliver again: WeCom documents that it drops such messages; what exactly
    it answers is our assumption."""

    def __init__(
        self,
        corp_id: str = DEMO_WECOM_CORP_ID,
        corp_secret: str = DEMO_WECOM_SECRET,
        agent_id: int = DEMO_WECOM_AGENT_ID,
        *,
        users: Collection[str] | None = None,
        token_ttl: int = 7200,
        clock: Clock | None = None,
        on_record: OnRecord | None = None,
    ) -> None:
        super().__init__(clock=clock, on_record=on_record)
        self.corp_id, self.corp_secret, self.agent_id = corp_id, corp_secret, agent_id
        self.users = set(users) if users is not None else None
        self.token_ttl = token_ttl
        self.messages: list[WeComRecord] = []
        self.duplicates = 0
        self.gettoken_calls = 0
        self._tokens: dict[str, float] = {}  # token → expires at
        self._seen: dict[str, tuple[float, str]] = {}  # duplicate key → (sent at, msgid)

    def expire_tokens(self) -> None:
        """Every token issued so far is past its expiry from now on (as after 7200 s)."""
        with self.lock:
            self._tokens = dict.fromkeys(self._tokens, float("-inf"))

    def fail_next(self, errcode: int, errmsg: str = "", *, times: int = 1) -> None:
        """Answer the next `times` message/send calls with this errcode (-1, 45009, …)."""
        self.failures.add((errcode, errmsg or "simulated error"), times)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path, method = _path(environ), str(environ.get("REQUEST_METHOD", "GET")).upper()
        query = {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING", ""))).items()}
        if path == "/cgi-bin/gettoken" and method == "GET":
            with self.lock:
                doc = self._gettoken(query)
        elif path == "/cgi-bin/message/send" and method == "POST":
            raw = _body(environ)
            with self.lock:
                doc = self._send(query, raw)
        else:
            return _respond(start_response, 404, {"errcode": 404, "errmsg": "not found"})
        # WeCom answers HTTP 200 with an errcode, errors included.
        return _respond(start_response, 200, doc)

    def _gettoken(self, q: dict[str, str]) -> dict[str, Any]:
        self.gettoken_calls += 1
        if not q.get("corpid"):
            return _wecom_error(41002, "corpid missing")
        if q["corpid"] != self.corp_id:
            return _wecom_error(40013, "invalid corpid")
        if not q.get("corpsecret"):
            return _wecom_error(41004, "corpsecret missing")
        if not hmac.compare_digest(q["corpsecret"], self.corp_secret):
            return _wecom_error(40001, "invalid credential")
        token = secrets.token_urlsafe(48)
        self._tokens[token] = self.clock() + self.token_ttl
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl}

    def _send(self, q: dict[str, str], raw: bytes) -> dict[str, Any]:
        token = q.get("access_token")
        if not token:
            return _wecom_error(41001, "access_token missing")
        expires_at = self._tokens.get(token)
        if expires_at is None:
            return _wecom_error(40014, "invalid access_token")
        now = self.clock()
        if expires_at <= now:
            return _wecom_error(42001, "access_token expired")
        injected = self.failures.take()
        if injected is not None:
            return _wecom_error(*injected)
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            return _wecom_error(47001, "data format error")
        if not isinstance(body, dict):
            return _wecom_error(47001, "data format error")
        try:
            agentid = int(body.get("agentid"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return _wecom_error(41011, "missing agentid")
        if agentid != self.agent_id:
            return _wecom_error(40056, "invalid agentid")
        msgtype = body.get("msgtype")
        content = body.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype not in ("text", "textcard") or not isinstance(content, dict):
            return _wecom_error(40008, "invalid message type")
        if msgtype == "text":
            if not content.get("content"):
                return _wecom_error(44004, "empty content")
            # WeCom truncates over-long text to 2048 bytes rather than refusing it.
            content = {"content": _clip(str(content["content"]), 2048)}
        else:
            if not content.get("title") or not content.get("description") or not content.get("url"):
                return _wecom_error(44004, "empty content")
            content = {
                "title": _clip(str(content["title"]), 128),
                "description": _clip(str(content["description"]), 512),
                "url": str(content["url"]),
                "btntxt": str(content.get("btntxt") or "详情"),
            }
        receivers = tuple(u for u in str(body.get("touser") or "").split("|") if u)
        if not receivers:
            return _wecom_error(40031, "invalid user list")
        invalid = [u for u in receivers if self.users is not None and u not in self.users]
        valid = tuple(u for u in receivers if u not in invalid)
        if not valid:
            return _wecom_error(81013, "user & party & tag all invalid")
        key = None
        if body.get("enable_duplicate_check") == 1:
            interval = min(int(body.get("duplicate_check_interval") or 1800), 4 * 3600)
            key = json.dumps(
                [agentid, sorted(receivers), msgtype, content], sort_keys=True, ensure_ascii=False
            )
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < interval:
                self.duplicates += 1
                return self._ok(seen[1], invalid)
        msgid = secrets.token_urlsafe(32)
        if key is not None:
            self._seen[key] = (now, msgid)
        record = WeComRecord(valid, agentid, msgtype, content, msgid, now)
        self.messages.append(record)
        self._recorded("wecom", record)
        return self._ok(msgid, invalid)

    def _ok(self, msgid: str, invalid: list[str]) -> dict[str, Any]:
        return {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "|".join(invalid),
            "invalidparty": "",
            "invalidtag": "",
            "unlicenseduser": "",
            "msgid": msgid,
            "response_code": secrets.token_hex(16),
        }


def _clip(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


# --- DingTalk robot -------------------------------------------------------------------------


def dingtalk_sign(timestamp_ms: str, secret: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


@dataclass(frozen=True)
class DingTalkRecord:
    access_token: str
    msgtype: str
    title: str
    text: str
    at_mobiles: tuple[str, ...]
    is_at_all: bool
    received_at: float


class DingTalkSimulator(_Simulator):
    """POST /robot/send?access_token=…[&timestamp=…&sign=…] for the robots in `robots`
    (access_token → 加签 secret, "" for a robot secured otherwise)."""

    TIMESTAMP_WINDOW = 3600

    def __init__(
        self,
        robots: Mapping[str, str] | None = None,
        *,
        per_minute: int = 20,
        clock: Clock | None = None,
        on_record: OnRecord | None = None,
    ) -> None:
        super().__init__(clock=clock, on_record=on_record)
        self.robots = dict(robots or {DEMO_DINGTALK_TOKEN: DEMO_DINGTALK_SECRET})
        self.per_minute = per_minute
        self.messages: list[DingTalkRecord] = []
        self._recent: dict[str, deque[float]] = {}

    def fail_next(self, errcode: int, errmsg: str = "", *, times: int = 1) -> None:
        self.failures.add((errcode, errmsg or "simulated error"), times)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if _path(environ) != "/robot/send" or str(environ.get("REQUEST_METHOD")).upper() != "POST":
            return _respond(start_response, 404, {"errcode": 404, "errmsg": "not found"})
        query = {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING", ""))).items()}
        raw = _body(environ)
        with self.lock:
            doc = self._send(query, raw)
        return _respond(start_response, 200, doc)

    def _send(self, q: dict[str, str], raw: bytes) -> dict[str, Any]:
        token = q.get("access_token", "")
        if token not in self.robots:
            return {"errcode": 300001, "errmsg": "token is not exist"}
        secret = self.robots[token]
        now = self.clock()
        if secret:
            ts, sign = q.get("timestamp", ""), q.get("sign", "")
            if not ts.isdigit() or abs(int(ts) / 1000 - now) > self.TIMESTAMP_WINDOW:
                return {"errcode": 310000, "errmsg": "invalid timestamp"}
            if not sign or not hmac.compare_digest(dingtalk_sign(ts, secret), sign):
                return {"errcode": 310000, "errmsg": "sign not match"}
        recent = self._recent.setdefault(token, deque())
        while recent and now - recent[0] >= 60:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return {
                "errcode": 130101,
                "errmsg": f"send too fast, exceed {self.per_minute} times per minute",
            }
        injected = self.failures.take()
        if injected is not None:
            return {"errcode": injected[0], "errmsg": injected[1]}
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            return {"errcode": 40035, "errmsg": "缺少参数 json"}
        msgtype = body.get("msgtype") if isinstance(body, dict) else None
        if msgtype == "markdown":
            md = body.get("markdown") or {}
            title, text = str(md.get("title") or ""), str(md.get("text") or "")
            if not title or not text:
                return {"errcode": 40035, "errmsg": "缺少参数 markdown.title/markdown.text"}
        elif msgtype == "text":
            title, text = "", str((body.get("text") or {}).get("content") or "")
            if not text:
                return {"errcode": 40035, "errmsg": "缺少参数 text.content"}
        else:
            return {"errcode": 40035, "errmsg": f"不支持的消息类型 {msgtype}"}
        at = body.get("at") or {}
        recent.append(now)
        record = DingTalkRecord(
            access_token=token,
            msgtype=msgtype,
            title=title,
            text=text,
            at_mobiles=tuple(str(m) for m in at.get("atMobiles") or ()),
            is_at_all=bool(at.get("isAtAll")),
            received_at=now,
        )
        self.messages.append(record)
        self._recorded("dingtalk", record)
        return {"errcode": 0, "errmsg": "ok"}


# --- our webhook ----------------------------------------------------------------------------


class WebhookReceiver(_Simulator):
    """Receives the webhook channel's POSTs on any path.

    Checks X-Jingwei-Signature over f"{X-Jingwei-Timestamp}.{body}" (401 when it does not match,
    or the timestamp is more than `tolerance_seconds` away), then dedupes on X-Jingwei-Delivery:
    a delivery seen before is answered 200 again but counted in `duplicates`, not stored."""

    def __init__(
        self,
        secret: str = DEMO_WEBHOOK_SECRET,
        *,
        tolerance_seconds: int = 300,
        clock: Clock | None = None,
        on_record: OnRecord | None = None,
    ) -> None:
        super().__init__(clock=clock, on_record=on_record)
        self.secret = secret.encode("utf-8")
        self.tolerance_seconds = tolerance_seconds
        self.bodies: dict[str, bytes] = {}  # delivery id → raw body, in arrival order
        self.duplicates = 0
        self.rejected = 0

    def fail_next(self, status: int, *, times: int = 1) -> None:
        """Answer the next `times` requests with this HTTP status (429, 500, 503, 400, …)."""
        self.failures.add(status, times)

    @property
    def received(self) -> int:
        return len(self.bodies)

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            bodies = list(self.bodies.values())
        return [json.loads(b) for b in bodies]

    def message(self, delivery: str) -> dict[str, Any]:
        return dict(json.loads(self.bodies[delivery]))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if str(environ.get("REQUEST_METHOD")).upper() != "POST":
            return _respond(start_response, 405, {"error": "POST only"})
        status = self.failures.take()
        if status is not None:
            return _respond(start_response, status, {"error": "simulated failure"})
        raw = _body(environ)
        delivery = str(environ.get("HTTP_X_JINGWEI_DELIVERY", ""))
        ts = str(environ.get("HTTP_X_JINGWEI_TIMESTAMP", ""))
        given = str(environ.get("HTTP_X_JINGWEI_SIGNATURE", ""))
        if not delivery or not ts.isdigit() or not given:
            with self.lock:
                self.rejected += 1
            return _respond(start_response, 400, {"error": "missing X-Jingwei-* headers"})
        mac = hmac.new(self.secret, ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest("sha256=" + mac, given):
            with self.lock:
                self.rejected += 1
            return _respond(start_response, 401, {"error": "bad signature"})
        if abs(int(ts) - self.clock()) > self.tolerance_seconds:
            with self.lock:
                self.rejected += 1
            return _respond(start_response, 401, {"error": "stale timestamp"})
        with self.lock:
            duplicate = delivery in self.bodies
            if duplicate:
                self.duplicates += 1
            else:
                self.bodies[delivery] = raw
                number = len(self.bodies)
        if duplicate:
            return _respond(start_response, 200, {"ok": True, "duplicate": True})
        self._recorded("webhook", delivery)
        return _respond(start_response, 200, {"ok": True}, [("X-Request-Id", f"wh-{number}")])


# --- several on one port --------------------------------------------------------------------


class PrefixRouter:
    """Mounts apps under path prefixes ("/sms" → the app sees "/" with SCRIPT_NAME "/sms")."""

    def __init__(self, apps: Mapping[str, WSGIApp]) -> None:
        self.apps = {"/" + p.strip("/"): app for p, app in apps.items()}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = _path(environ)
        for prefix, app in self.apps.items():
            if path == prefix or path.startswith(prefix + "/"):
                environ = dict(environ)
                environ["SCRIPT_NAME"] = str(environ.get("SCRIPT_NAME", "")) + prefix
                environ["PATH_INFO"] = path[len(prefix) :] or "/"
                return app(environ, start_response)
        return _respond(
            start_response, 404, {"error": "no simulator here", "mounted": sorted(self.apps)}
        )


@dataclass
class Simulators:
    sms: AliyunSmsSimulator = field(default_factory=AliyunSmsSimulator)
    wecom: WeComSimulator = field(default_factory=WeComSimulator)
    dingtalk: DingTalkSimulator = field(default_factory=DingTalkSimulator)
    webhook: WebhookReceiver = field(default_factory=WebhookReceiver)

    def app(self) -> PrefixRouter:
        return PrefixRouter(
            {
                "/sms": self.sms,
                "/wecom": self.wecom,
                "/dingtalk": self.dingtalk,
                "/webhook": self.webhook,
            }
        )

    @staticmethod
    def channel_settings(base_url: str) -> dict[str, dict[str, Any]]:
        """Settings for each channel that point it at the simulators mounted at `base_url` with
        the demo credentials."""
        base = base_url.rstrip("/")
        return {
            "sms": {
                "access_key_id": DEMO_SMS_KEY_ID,
                "access_key_secret": DEMO_SMS_KEY_SECRET,
                "sign_name": DEMO_SMS_SIGN_NAME,
                "template_code": DEMO_SMS_TEMPLATE,
                "endpoint": f"{base}/sms/",
            },
            "wecom": {
                "corp_id": DEMO_WECOM_CORP_ID,
                "corp_secret": DEMO_WECOM_SECRET,
                "agent_id": DEMO_WECOM_AGENT_ID,
                "api_base": f"{base}/wecom",
            },
            "dingtalk": {
                "access_token": DEMO_DINGTALK_TOKEN,
                "secret": DEMO_DINGTALK_SECRET,
                "robot_url": f"{base}/dingtalk/robot/send",
            },
            "webhook": {"url": f"{base}/webhook/", "secret": DEMO_WEBHOOK_SECRET},
        }


# --- serving --------------------------------------------------------------------------------


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # The benchmark opens many connections at once; the default backlog of 5 would refuse some.
    request_queue_size = 256

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks our own name up (socket.getfqdn), which can stall for
        # seconds where reverse DNS is slow; the loopback address is name enough.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Served:
    """A WSGI app listening on `url` until `stop()` (or the end of a `with` block)."""

    server: _ThreadingServer
    thread: threading.Thread
    url: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 0) -> Served:
    """Serve `app` in a background thread (port 0: a free one) and return once it listens."""
    server = _ThreadingServer((host, port), _QuietHandler)
    server.set_app(app)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"simulator:{server.server_port}",
        daemon=True,
    )
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    return Served(server, thread, f"http://{shown}:{server.server_port}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for "the provider is down")."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
